"""Run adapters inside the hub: cameras become frame sources, every adapter's events reach the bus.

:class:`CameraFeed` is what the analyzer and the web app read for one camera. It exists from the
start (listeners attach at once) while its adapter may still be unreachable: it resolves the
camera's streams through the adapter (``probe`` → ``start`` → ``streams``, retried with backoff
forever; an auth failure waits longer and is reported once), then runs a
:class:`~streams.reader.StreamReader` on the detection stream and, for adapters with
``Capability.EVENTS`` (ONVIF motion, tamper, line crossing), forwards their events to the bus.

:func:`run_source` does the same for event-only adapters listed under ``sources:``.
Each adapter's state is kept in the hub's components (``/api/health``): ``ok``, ``connecting``,
``auth_failed``, ``unreachable``, ``restarting``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from adapters.base import Adapter, Capability, DeviceInfo, StreamSet
from hub.bus import TOPIC_SOURCE_EVENT, Bus
from hub.errors import AdapterAuthError, AdapterError, AdapterUnsupported
from hub.redact import redact_text
from streams.backoff import Backoff
from streams.frame import Frame
from streams.reader import StatusCallback, StreamReader, StreamStats

log = logging.getLogger(__name__)

AUTH_RETRY_S = 300.0


class SourceSupervisor:
    """Connect one adapter with backoff; record its state in ``components``."""

    def __init__(self, adapter: Adapter[Any], components: MutableMapping[str, str],
                 backoff: Backoff | None = None, auth_retry_s: float = AUTH_RETRY_S) -> None:
        self.adapter = adapter
        self.components = components
        self.backoff = backoff or Backoff()
        self.auth_retry_s = auth_retry_s
        self.info: DeviceInfo | None = None
        self.key = f"source:{adapter.id}"
        self.connected = asyncio.Event()  # set while the adapter is up (state "ok")
        self._reported: str | None = None

    def set_state(self, state: str, detail: str = "") -> None:
        self.components[self.key] = state
        if state == "ok":
            self.connected.set()
        else:
            self.connected.clear()
        if state != self._reported:
            self._reported = state
            level = logging.INFO if state in ("ok", "connecting") else logging.WARNING
            log.log(level, "%s %s: %s%s", self.adapter.config.kind, self.adapter.id, state,
                    f" ({redact_text(detail)})" if detail else "")

    def diagnostics(self) -> dict[str, Any]:
        return {
            "id": self.adapter.id,
            "kind": self.adapter.config.kind,
            "state": self.components.get(self.key, "starting"),
            "capabilities": sorted(str(c) for c in type(self.adapter).capabilities),
            "device": self.info.to_json() if self.info else None,
            "adapter": self.adapter.diagnostics(),
        }

    async def connect(self) -> None:
        """Probe until the device answers (forever, with backoff)."""
        self.set_state("connecting")
        while True:
            try:
                self.info = await self.adapter.probe()
                return
            except Exception as exc:
                await self.failed(exc)

    async def run(self, body: Callable[[], Any]) -> None:
        """connect → ``async with adapter`` → ``await body()``; again after any failure."""
        while True:
            await self.connect()
            started = time.monotonic()
            try:
                async with self.adapter:
                    self.set_state("ok")
                    await body()
                    return
            except Exception as exc:  # also ExceptionGroups from the body's TaskGroup
                await self.failed(exc, time.monotonic() - started)

    async def failed(self, exc: BaseException, connected_for: float = 0.0) -> None:
        """Record why the adapter stopped and wait before the next attempt.

        Refused credentials wait ``auth_retry_s``; an unreachable or not-ready device backs off; anything
        else is a bug in the adapter: logged with its traceback, then retried with backoff.
        """
        error = _first_error(exc)
        if isinstance(error, AdapterAuthError):
            self.set_state("auth_failed", str(error))
            await asyncio.sleep(self.auth_retry_s)
            return
        if isinstance(error, AdapterError):
            self.set_state("unreachable", str(error))
        else:
            log.error("%s %s failed: %s", self.adapter.config.kind, self.adapter.id,
                      redact_text(f"{type(error).__name__}: {error}"), exc_info=error)
            self.set_state("restarting", type(error).__name__)
        await asyncio.sleep(self.backoff.failure(connected_for))


def _first_error(exc: BaseException) -> BaseException:
    """The most telling error inside (possibly nested) exception groups: auth first, then adapter."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = _leaves(exc)
    for kind in (AdapterAuthError, AdapterError):
        found = next((e for e in leaves if isinstance(e, kind)), None)
        if found is not None:
            return found
    return leaves[0] if leaves else exc


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


async def forward_events(adapter: Adapter[Any], bus: Bus) -> None:
    """Publish every event of an adapter on the bus until cancelled."""
    async for event in adapter.events():
        bus.publish(TOPIC_SOURCE_EVENT, event)


async def forward_camera_events(adapter: Adapter[Any], bus: Bus, auth_retry_s: float = AUTH_RETRY_S,
                                backoff: Backoff | None = None) -> None:
    """A camera's own events, restarted on failure on their own: a flaky event service (or refused
    event credentials) never stops the camera's video."""
    backoff = backoff or Backoff(initial=1.0, maximum=60.0)
    while True:
        started = time.monotonic()
        try:
            await forward_events(adapter, bus)
            return
        except AdapterAuthError as exc:
            log.warning("%s: events refused (%s); video continues, retrying in %.0f s",
                        adapter.id, redact_text(str(exc)), auth_retry_s)
            await asyncio.sleep(auth_retry_s)
        except Exception as exc:
            delay = backoff.failure(time.monotonic() - started)
            log.warning("%s: events failed (%s); video continues, retrying in %.0f s", adapter.id,
                        redact_text(f"{type(exc).__name__}: {exc}"), delay)
            await asyncio.sleep(delay)


class CameraFeed:
    """One camera: a frame source for the analyzer and web app, fed through its adapter."""

    def __init__(
        self,
        adapter: Adapter[Any],
        bus: Bus,
        components: MutableMapping[str, str],
        *,
        width: int,
        fps: float,
        on_status: StatusCallback | None = None,
        reader_options: dict[str, Any] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if Capability.STREAMS not in type(adapter).capabilities:
            raise AdapterUnsupported(f"{adapter.config.kind} adapter {adapter.id!r} has no video streams")
        self.adapter = adapter
        self.camera_id = adapter.id
        self.bus = bus
        self.width = width
        self.fps = fps
        self.on_status = on_status
        self.reader_options = reader_options or {}
        self.supervisor = SourceSupervisor(adapter, components, backoff)
        self.reader: StreamReader | None = None
        self.streams: StreamSet | None = None
        self._listeners: list[Callable[[], None]] = []
        self._idle = False
        self._empty_stats = StreamStats()

    # -- FrameSource (what the analyzer and the web app use) -----------------------------------
    def latest(self) -> Frame | None:
        return self.reader.latest() if self.reader is not None else None

    def add_frame_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Called (from the decode thread) for every new frame, whichever reader the feed runs now."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def _notify(self) -> None:  # the reader's one listener: fans out to the feed's current listeners
        for callback in tuple(self._listeners):
            callback()

    def set_idle(self, idle: bool) -> None:
        self._idle = idle
        if self.reader is not None:
            self.reader.set_idle(idle)

    @property
    def stats(self) -> StreamStats:
        return self.reader.stats if self.reader is not None else self._empty_stats

    @property
    def online(self) -> bool:
        return self.reader.online if self.reader is not None else False

    def diagnostics(self) -> dict[str, Any]:
        return {**self.supervisor.diagnostics(),
                "streams": self.streams.to_json() if self.streams else None}

    # -- runtime --------------------------------------------------------------------------------
    async def run(self) -> None:
        await self.supervisor.run(self._serve)

    async def _serve(self) -> None:
        self.streams = await self.adapter.streams()
        stream = self.streams.detection
        if stream is None:
            raise AdapterError(f"camera {self.camera_id}: the adapter returned no stream")
        if self.reader is None or self.reader.spec.url != stream.url:
            options = dict(self.reader_options)
            if stream.poll_s is not None:
                options["poll_s"] = stream.poll_s
            if stream.timeout_s is not None:
                options["open_timeout"] = stream.timeout_s
            reader = StreamReader(self.camera_id, stream.url, width=self.width, fps=self.fps,
                                  transport=stream.transport, loop=stream.loop, realtime=stream.realtime,
                                  on_status=self.on_status, **options)
            reader.add_frame_listener(self._notify)
            reader.set_idle(self._idle)
            self.reader = reader
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.reader.run(), name=f"reader:{self.camera_id}")
            if Capability.EVENTS in type(self.adapter).capabilities:
                tg.create_task(forward_camera_events(self.adapter, self.bus, self.supervisor.auth_retry_s),
                               name=f"events:{self.camera_id}")


async def run_source(adapter: Adapter[Any], bus: Bus, components: MutableMapping[str, str],
                     supervisor: SourceSupervisor | None = None) -> None:
    """An event-only adapter: supervised connect, then its events onto the bus, forever."""
    supervisor = supervisor or SourceSupervisor(adapter, components)
    await supervisor.run(lambda: forward_events(adapter, bus))
