"""sanwang-hub runtime: config, CLI, event bus, storage, web app."""

__version__ = "0.1.0"
