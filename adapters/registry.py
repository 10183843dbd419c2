"""Which adapter kinds exist: in-tree ones (the :func:`register` decorator) and third-party ones
(the entry point group ``sanwang_hub.adapters``).

A third-party package declares, in its ``pyproject.toml``::

    [project.entry-points."sanwang_hub.adapters"]
    acme-gate = "acme_gate.adapter:AcmeGate"

An adapter that fails to import is recorded in :func:`load_failures` (shown by ``hub adapters list``
and in ``/api/health``) and never stops the hub; only a config that *uses* that kind fails.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from pydantic import ValidationError

from adapters.base import Adapter, AdapterConfig, AdapterContext, Capability
from hub.errors import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sanwang_hub.adapters"

# In-tree adapters, imported on first use so `import adapters.registry` stays cheap.
BUILTIN_MODULES: tuple[str, ...] = (
    "adapters.generic",
    "adapters.onvif",
    "adapters.mqtt",
)


@dataclass(frozen=True, slots=True)
class AdapterEntry:
    kind: str
    cls: type[Adapter[Any]]
    origin: str  # "builtin" or "entry point <name> (<distribution>)"

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.cls.capabilities

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "origin": self.origin,
            "capabilities": sorted(str(c) for c in self.capabilities),
            "commands": sorted(self.cls.commands),
            "description": self.cls.description,
        }


class _State:
    loaded = False
    origin = "builtin"  # where adapters registered right now come from


_entries: dict[str, AdapterEntry] = {}
_failures: dict[str, str] = {}
_lock = threading.RLock()

A = TypeVar("A", bound=type[Adapter[Any]])


def _kinds_of(cls: type[Adapter[Any]]) -> tuple[str, ...]:
    """The ``kind`` literal values of an adapter's config model."""
    annotation = cls.config_model.model_fields["kind"].annotation
    args = getattr(annotation, "__args__", None)
    if getattr(annotation, "__origin__", None) is not None and args and all(isinstance(a, str) for a in args):
        return tuple(args)
    raise TypeError(
        f"{cls.__qualname__}.config_model.kind must be a Literal[...] of the kind names, got {annotation!r}"
    )


def register(cls: A) -> A:
    """Class decorator: make an adapter available under its config's ``kind`` value(s)."""
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"@register expects an Adapter subclass, got {cls!r}")
    if not issubclass(cls.config_model, AdapterConfig):
        raise TypeError(f"{cls.__qualname__}.config_model must subclass AdapterConfig")
    kinds = _kinds_of(cls)
    with _lock:
        for kind in kinds:
            old = _entries.get(kind)
            if old is not None and old.cls is not cls:
                raise ValueError(
                    f"adapter kind {kind!r} is already registered by {old.cls.__module__} ({old.origin})"
                )
        cls.kind = kinds[0]
        for kind in kinds:
            _entries[kind] = AdapterEntry(kind, cls, _State.origin)
    return cls


def load_all() -> None:
    """Import the in-tree adapters and every installed entry point (once)."""
    with _lock:
        if _State.loaded:
            return
        _State.loaded = True
        for module in BUILTIN_MODULES:
            try:
                importlib.import_module(module)
            except Exception as exc:  # a broken adapter must not stop the hub
                _failures[module] = f"{type(exc).__name__}: {exc}"
                log.error("adapter module %s failed to import: %s", module, exc)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep.dist, "name", "?")
            _State.origin = f"entry point {ep.name} ({dist})"
            try:
                obj = ep.load()
                if isinstance(obj, type) and issubclass(obj, Adapter):
                    register(obj)
            except Exception as exc:
                _failures[f"{ep.name} ({dist})"] = f"{type(exc).__name__}: {exc}"
                log.error("adapter entry point %s from %s failed to load: %s", ep.name, dist, exc)
            finally:
                _State.origin = "builtin"


def reload() -> None:
    """Forget entry-point adapters and import failures, then look again (after installing a package)."""
    with _lock:
        for kind in [k for k, e in _entries.items() if e.origin != "builtin"]:
            del _entries[kind]
        _failures.clear()
        _State.loaded = False
    importlib.invalidate_caches()
    load_all()


def entries() -> list[AdapterEntry]:
    load_all()
    return sorted(_entries.values(), key=lambda e: e.kind)


def load_failures() -> dict[str, str]:
    """Adapter modules or entry points that failed to import, with the error."""
    load_all()
    return dict(_failures)


def adapter_class(kind: str) -> type[Adapter[Any]]:
    load_all()
    entry = _entries.get(kind)
    if entry is None:
        known = sorted(_entries)
        close = difflib.get_close_matches(kind, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known kinds: {', '.join(known)}"
        broken = [f"{name}: {err}" for name, err in _failures.items()]
        if broken:
            hint += "; adapters that failed to import: " + "; ".join(broken)
        raise ConfigError(f"unknown adapter kind {kind!r}", field="kind", hint=hint)
    return entry.cls


def parse_config(raw: Mapping[str, Any], *, default_kind: str | None = None) -> AdapterConfig:
    """Validate one adapter config mapping with its kind's model.

    Raises :class:`pydantic.ValidationError` for invalid fields (callers turn it into a located
    :class:`ConfigError`) and :class:`ConfigError` for a missing or unknown ``kind``.
    """
    if isinstance(raw, AdapterConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"an adapter config must be a mapping, got {type(raw).__name__}")
    kind = raw.get("kind", default_kind)
    if kind is None and "url" in raw:  # a camera given by URL alone: rtsp://, http://, file://
        from adapters.generic import infer_camera_kind

        kind = infer_camera_kind(raw["url"])
    if not isinstance(kind, str) or not kind:
        raise ConfigError("missing 'kind'", field="kind", hint="see `hub adapters list` for the kinds")
    cls = adapter_class(kind)
    data = dict(raw)
    data["kind"] = kind
    return cls.config_model.model_validate(data)


def create(config: AdapterConfig | Mapping[str, Any], context: AdapterContext | None = None) -> Adapter[Any]:
    """Build the adapter for a config (a validated model or a raw mapping)."""
    cfg = config if isinstance(config, AdapterConfig) else parse_config(config)
    return adapter_class(cfg.kind)(cfg, context)


def validation_message(exc: ValidationError) -> str:
    """One line per error: ``field.path: message``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)
