"""An example third-party sanwang-hub adapter package (see docs/adapters.md)."""
