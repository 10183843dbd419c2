"""The adapter conformance suite (implemented in :mod:`adapters.conformance` so that out-of-tree
adapter packages can import it too). Subclass :class:`AdapterConformance` and give it an
``adapter_case`` fixture; see that module's docstring."""

from adapters.conformance import AdapterCase, AdapterConformance, LoopLagMonitor, first_event

__all__ = ["AdapterCase", "AdapterConformance", "LoopLagMonitor", "first_event"]
