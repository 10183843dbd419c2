"""Adapters inside the hub runtime: camera feeds and event sources, supervised against real peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from acme_gate.simulator import AcmeGateSimulator

from adapters.base import Capability, DeviceInfo
from adapters.generic import CameraConfig, UrlCamera
from adapters.registry import create
from hub.bus import TOPIC_SOURCE_EVENT, Bus
from hub.errors import AdapterAuthError
from hub.events import EventKind, SourceEvent
from hub.sources import CameraFeed, SourceSupervisor, run_source
from streams.backoff import Backoff
from tests.adapters.mqtt_support import wait_until
from tests.support.media import make_test_clip
from tests.support.rtsp import RtspServer

TOKEN = "feed-test-token-77"


@contextlib.asynccontextmanager
async def running(coro: object) -> AsyncIterator[asyncio.Task[None]]:
    task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_clip(tmp_path_factory.mktemp("clips") / "feed.mp4", 3.0, 640, 360, 25)


async def test_file_camera_feed_delivers_frames_to_listeners_attached_before_it_connected(clip: Path) -> None:
    components: dict[str, str] = {}
    adapter = create({"id": "yard", "url": clip.as_uri(), "loop": True})
    feed = CameraFeed(adapter, Bus(), components, width=320, fps=5)
    loop = asyncio.get_running_loop()
    woke = asyncio.Event()
    feed.add_frame_listener(lambda: loop.call_soon_threadsafe(woke.set))  # called from the decode thread
    assert feed.latest() is None
    assert feed.stats.decoded == 0
    async with running(feed.run()):
        await asyncio.wait_for(woke.wait(), 10)
        await wait_until(lambda: feed.latest() is not None, 5, "a frame")
        assert components["source:yard"] == "ok"
        assert feed.online
    frame = feed.latest()
    assert frame is not None
    assert frame.image.shape[1] == 320
    diag = feed.diagnostics()
    assert diag["streams"]["main"]["url"] == clip.as_uri()


async def test_rtsp_camera_unreachable_at_start_connects_when_the_server_appears(
    clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = RtspServer({"cam": clip}, user="admin", password="feed-pass-9")
    server.start()
    url = server.url("cam")  # bare URL; credentials come from the config
    server.stop()
    components: dict[str, str] = {}
    adapter = create({"id": "gate", "url": url, "username": "admin", "password": "feed-pass-9"})
    feed = CameraFeed(adapter, Bus(), components, width=320, fps=5,
                      backoff=Backoff(initial=0.2, maximum=0.5))
    try:
        async with running(feed.run()):
            await wait_until(lambda: components.get("source:gate") == "unreachable", 10, "unreachable")
            await asyncio.sleep(1.0)
            assert feed.latest() is None
            server.start()  # same port
            await wait_until(lambda: feed.latest() is not None, 20, "frames once the camera is up")
            assert components["source:gate"] == "ok"
    finally:
        server.stop()
    assert "feed-pass-9" not in caplog.text
    # one line per state change, not one per retry
    states = [r.getMessage() for r in caplog.records if r.name == "hub.sources"]
    assert sum("unreachable" in m for m in states) == 1


async def test_event_source_reaches_the_bus_and_survives_a_controller_outage() -> None:
    sim = await AcmeGateSimulator(TOKEN).start()
    bus = Bus()
    components: dict[str, str] = {}
    adapter = create({"kind": "acme-gate", "id": "gate-n", "url": sim.url, "token": TOKEN, "wait_s": 1})
    supervisor = SourceSupervisor(adapter, components, Backoff(initial=0.2, maximum=0.5))
    try:
        async with bus.subscription(TOPIC_SOURCE_EVENT) as sub, \
                running(run_source(adapter, bus, components, supervisor)):
            await wait_until(lambda: components.get("source:gate-n") == "ok", 5, "connected")
            await sim.emit("door_forced")
            topic, event = await asyncio.wait_for(sub.get(), 10)
            assert topic == TOPIC_SOURCE_EVENT
            assert isinstance(event, SourceEvent)
            assert event.kind is EventKind.DOOR_FORCED
            # the controller goes away and comes back on the same port: events resume, none repeated
            port = sim.port
            await sim.stop()
            await asyncio.sleep(1.5)
            sim = await AcmeGateSimulator(TOKEN, port=port).start()
            sim.events = [{"seq": 1, "type": "door_forced", "door": "1"}]  # what it already reported
            await sim.emit("door_open")
            topic, event = await asyncio.wait_for(sub.get(), 15)
            assert event.kind is EventKind.DOOR_OPENED
    finally:
        await sim.stop()


async def test_refused_credentials_are_reported_once_and_not_retried_in_a_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = await AcmeGateSimulator(TOKEN).start()
    components: dict[str, str] = {}
    adapter = create({"kind": "acme-gate", "id": "gate-x", "url": sim.url, "token": "wrong-token-123"})
    supervisor = SourceSupervisor(adapter, components, auth_retry_s=60)
    try:
        async with running(run_source(adapter, Bus(), components, supervisor)):
            await wait_until(lambda: components.get("source:gate-x") == "auth_failed", 5, "auth_failed")
            await asyncio.sleep(1.0)
    finally:
        await sim.stop()
    warnings = [r for r in caplog.records if r.name == "hub.sources" and "auth_failed" in r.getMessage()]
    assert len(warnings) == 1
    assert "wrong-token-123" not in caplog.text


class _EventsFail(UrlCamera):
    """A file camera whose event service fails: first refused credentials, then a bug."""

    capabilities = frozenset({Capability.STREAMS, Capability.EVENTS})
    calls = 0

    async def events(self) -> AsyncIterator[SourceEvent]:
        type(self).calls += 1
        if type(self).calls == 1:
            raise AdapterAuthError("event service refused us")
        raise RuntimeError("bug in the event decoder")
        yield  # pragma: no cover - makes this an async generator


async def test_failing_camera_events_never_stop_the_video(
    clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    components: dict[str, str] = {}
    adapter = _EventsFail(CameraConfig(id="yard", url=clip.as_uri(), loop=True))
    feed = CameraFeed(adapter, Bus(), components, width=320, fps=5)
    feed.supervisor.auth_retry_s = 0.2
    async with running(feed.run()):
        await wait_until(lambda: _EventsFail.calls >= 3, 10, "events retried after auth and bug failures")
        first = feed.latest()
        assert first is not None
        await wait_until(lambda: (feed.latest() or first).seq > first.seq + 3, 5, "video keeps flowing")
        assert components["source:yard"] == "ok"
    assert "events refused" in caplog.text
    assert "bug in the event decoder" in caplog.text


class _ProbeBug(UrlCamera):
    probes = 0

    async def probe(self) -> DeviceInfo:
        type(self).probes += 1
        if type(self).probes < 3:
            raise KeyError("unexpected reply field")
        return await super().probe()


async def test_an_adapter_bug_is_logged_and_retried_not_fatal(clip: Path) -> None:
    components: dict[str, str] = {}
    adapter = _ProbeBug(CameraConfig(id="gate", url=clip.as_uri(), loop=True))
    feed = CameraFeed(adapter, Bus(), components, width=320, fps=5, backoff=Backoff(initial=0.1, maximum=0.2))
    states: list[str] = []

    def frames_yet() -> bool:
        states.append(components.get("source:gate", ""))
        return feed.latest() is not None

    async with running(feed.run()):
        await wait_until(frames_yet, 10, "frames after two failed probes")
    assert "restarting" in states
    assert components["source:gate"] == "ok"


async def test_a_removed_listener_is_not_called_by_the_reader_created_later(clip: Path) -> None:
    adapter = create({"id": "yard", "url": clip.as_uri(), "loop": True})
    feed = CameraFeed(adapter, Bus(), {}, width=320, fps=5)
    calls = {"kept": 0, "removed": 0}
    feed.add_frame_listener(lambda: calls.__setitem__("kept", calls["kept"] + 1))
    remove = feed.add_frame_listener(lambda: calls.__setitem__("removed", calls["removed"] + 1))
    remove()  # before the reader exists (an analyzer restart does exactly this)
    async with running(feed.run()):
        await wait_until(lambda: calls["kept"] >= 3, 10, "frames")
    assert calls["removed"] == 0
