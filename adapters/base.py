"""The adapter contract: what every source of cameras and events implements.

An adapter is one file (``adapters/<kind>.py`` in-tree, or a module in any package that declares the
entry point group ``sanwang_hub.adapters``) with two things in it:

1. a config model, a subclass of :class:`AdapterConfig` (``extra="forbid"``, frozen) whose ``kind`` is
   a ``Literal[...]`` — the value users write as ``kind:`` in the hub's YAML;
2. a subclass of :class:`Adapter` registered with :func:`adapters.registry.register`.

Lifecycle, as the hub drives it::

    adapter = AdapterClass(config, context)
    info = await adapter.probe()         # check the device before it is accepted (may raise)
    async with adapter:                  # connect; keep the connection up until exit
        streams = await adapter.streams()        # cameras (Capability.STREAMS)
        async for event in adapter.events():     # Capability.EVENTS, runs until cancelled
            ...

Errors are the hub's own (:mod:`hub.errors`): :class:`AdapterConnectError` (unreachable, retry),
:class:`AdapterNotReady` (reachable, not ready, retry), :class:`AdapterAuthError` (credentials
refused; retrying will not help), :class:`AdapterUnsupported` (no such capability or command).
Anything else an adapter raises is a bug in the adapter; the hub logs it and restarts the adapter.

Secrets are :class:`pydantic.SecretStr` fields: they never appear in ``repr``, in
:meth:`Adapter.diagnostics` or in the API. URLs that must carry credentials (RTSP) go through
:func:`hub.redact.redact_url` before they are shown.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from hub.errors import AdapterUnsupported
from hub.events import SourceEvent
from hub.redact import redact_mapping, redact_url

if TYPE_CHECKING:
    from adapters.mqtt_client import MqttClient
    from hub.metrics import Metrics

ID_PATTERN = r"^[A-Za-z0-9_.-]+$"


class Capability(StrEnum):
    """What an adapter can do. Declared on the class, never guessed at run time."""

    EVENTS = "events"  # events() yields SourceEvents
    STREAMS = "streams"  # streams() returns video URIs: the adapter is a camera
    SNAPSHOT = "snapshot"  # streams().snapshot is a JPEG URL
    PTZ = "ptz"  # command("goto_preset", preset=...)
    COMMANDS = "commands"  # other command() names, listed in Adapter.commands


class AdapterConfig(BaseModel):
    """Base of every adapter's config. Subclasses narrow ``kind`` to a ``Literal``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(..., description="Adapter kind (see `hub adapters list`).")
    id: str = Field(..., pattern=ID_PATTERN, description="Stable id, unique in the hub.")
    name: str = Field("", description="Display name.")
    grid: str = Field("", description="Grid code the source belongs to.")
    enabled: bool = Field(True, description="Disabled sources are listed but not started.")

    def __repr_args__(self) -> Any:
        # URLs may carry credentials (rtsp://user:pass@...): never show them, not even in repr().
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if isinstance(value, str) and "://" in value else value

    def redacted(self) -> dict[str, Any]:
        """The config as JSON-able data with every secret replaced by ``***``."""
        data = self.model_dump(mode="json")
        for name, value in self:
            if isinstance(value, SecretStr) and value.get_secret_value():
                data[name] = "***"
        out = redact_mapping(data)
        assert isinstance(out, dict)
        return out


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What :meth:`Adapter.probe` learned about the device."""

    id: str
    kind: str
    capabilities: frozenset[Capability]
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "capabilities": sorted(str(c) for c in self.capabilities),
            "manufacturer": self.manufacturer,
            "model": self.model,
            "firmware": self.firmware,
            "serial": self.serial,
            "extra": redact_mapping(dict(self.extra)),
        }


@dataclass(frozen=True, slots=True)
class StreamUri:
    """One video stream. ``url`` may carry credentials: show it only through :meth:`safe_url`."""

    url: str
    transport: Literal["tcp", "udp"] = "tcp"
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    profile: str | None = None  # the ONVIF profile token it came from, if any
    loop: bool = False  # file:// only
    realtime: bool = True  # file:// only
    poll_s: float | None = None  # a JPEG snapshot URL polled this often instead of a video stream
    timeout_s: float | None = None  # connect/request timeout for the reader (None: the reader's default)

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.safe_url,
            "transport": self.transport,
            "width": self.width,
            "height": self.height,
            "codec": self.codec,
            "profile": self.profile,
            "poll_s": self.poll_s,
        }


@dataclass(frozen=True, slots=True)
class StreamSet:
    """A camera's streams: the main stream for viewing and evidence, the sub stream for detection."""

    main: StreamUri | None = None
    sub: StreamUri | None = None
    snapshot: str | None = None  # a JPEG URL (may carry credentials)

    @property
    def detection(self) -> StreamUri | None:
        """The stream detectors read: the sub stream when there is one (cheaper to decode)."""
        return self.sub or self.main

    @property
    def viewing(self) -> StreamUri | None:
        return self.main or self.sub

    def to_json(self) -> dict[str, Any]:
        return {
            "main": self.main.to_json() if self.main else None,
            "sub": self.sub.to_json() if self.sub else None,
            "snapshot": redact_url(self.snapshot) if self.snapshot else None,
        }


StatusCallback = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class AdapterContext:
    """What the hub lends an adapter. Everything is optional: adapters must run without a hub."""

    mqtt: MqttClient | None = None  # the hub's shared MQTT connection
    state_dir: Path | None = None  # a directory the adapter may keep files in
    metrics: Metrics | None = None
    on_status: StatusCallback | None = None  # device status rows for the dashboard (/api/devices)
    options: Mapping[str, Any] = field(default_factory=dict)  # hub-wide settings (e.g. held_open_s)


ConfigT = TypeVar("ConfigT", bound=AdapterConfig)


class Adapter(abc.ABC, Generic[ConfigT]):
    """Base class of every adapter. See the module docstring for the lifecycle."""

    kind: ClassVar[str]
    config_model: ClassVar[type[AdapterConfig]]
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.EVENTS})
    commands: ClassVar[frozenset[str]] = frozenset()
    description: ClassVar[str] = ""

    def __init__(self, config: ConfigT, context: AdapterContext | None = None) -> None:
        self.config = config
        self.context = context or AdapterContext()

    @property
    def id(self) -> str:
        return self.config.id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self.config.kind} id={self.config.id}>"

    # -- lifecycle --------------------------------------------------------------------------
    @abc.abstractmethod
    async def probe(self) -> DeviceInfo:
        """Check the device and describe it, without starting the adapter.

        Raises :class:`AdapterConnectError`, :class:`AdapterNotReady` or :class:`AdapterAuthError`.
        """

    async def start(self) -> None:
        """Connect. Called by ``async with``; the default does nothing."""

    async def close(self) -> None:
        """Disconnect and release everything. Must be safe to call twice and after a failed start."""

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- capabilities -----------------------------------------------------------------------
    def events(self) -> AsyncIterator[SourceEvent]:
        """Typed events until cancelled (Capability.EVENTS). Reconnects inside; never ends by itself."""
        raise AdapterUnsupported(f"{self.config.kind} adapter {self.id!r} has no events")

    async def streams(self) -> StreamSet:
        """Video stream URIs (Capability.STREAMS)."""
        raise AdapterUnsupported(f"{self.config.kind} adapter {self.id!r} has no video streams")

    async def command(self, name: str, **args: Any) -> dict[str, Any]:
        """Run a device command (e.g. ``goto_preset``); see :attr:`commands`."""
        known = ", ".join(sorted(self.commands)) or "none"
        raise AdapterUnsupported(
            f"{self.config.kind} adapter {self.id!r}: no command {name!r} (has: {known})"
        )

    def diagnostics(self) -> dict[str, Any]:
        """State for `/api/health` and support bundles. Never contains a secret."""
        return {
            "kind": self.config.kind,
            "id": self.id,
            "capabilities": sorted(str(c) for c in self.capabilities),
            "config": self.config.redacted(),
        }
