"""The ONVIF adapter against an emulated camera speaking real SOAP 1.2 over HTTP, whose stream URIs
point at a real RTSP server: probe, errors, clock skew, streams → frames, PullPoint events across a
reboot, renewals, PTZ presets, and the adapter conformance suite."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from adapters.base import Capability
from adapters.generic import probe_url
from adapters.onvif import OnvifCamera, OnvifCameraConfig
from adapters.onvif_client import OnvifSession
from adapters.onvif_events import EventMapper, Notification, SubscriptionStats, event_kind
from adapters.registry import create
from hub.errors import (
    AdapterAuthError,
    AdapterConnectError,
    AdapterError,
    AdapterNotReady,
    AdapterUnsupported,
)
from hub.events import EventKind, SourceEvent
from streams.reader import StreamReader
from tests.adapters.conformance import AdapterCase, AdapterConformance
from tests.support.media import make_test_clip
from tests.support.onvif_device import OnvifDevice
from tests.support.rtsp import RtspServer

USER = "operator"
PASSWORD = "0nvif-S3cret!"  # ONVIF and RTSP share the account, as on real cameras
SKEW_S = 2 * 3600.0  # the emulated camera's clock is two hours fast

MOTION = "tns1:RuleEngine/CellMotionDetector/Motion"
TAMPER = "tns1:VideoSource/GlobalSceneChange/ImagingService"
LINE = "tns1:RuleEngine/LineDetector/Crossed"
FIELD = "tns1:RuleEngine/FieldDetector/ObjectsInside"
VIDEO_LOSS = "tns1:VideoSource/SignalLoss"


@pytest.fixture(scope="module")
def rtsp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    clips = tmp_path_factory.mktemp("onvif-clips")
    main = make_test_clip(clips / "main720.mp4", 2.0, 1280, 720, 25)
    sub = make_test_clip(clips / "sub360.mp4", 2.0, 640, 360, 25)
    with RtspServer({"main": main, "sub": sub}, user=USER, password=PASSWORD) as server:
        yield server


@pytest.fixture
async def device(rtsp: RtspServer) -> AsyncIterator[OnvifDevice]:
    main, sub = rtsp.url("main", credentials=False), rtsp.url("sub", credentials=False)
    device = OnvifDevice(main_url=main, sub_url=sub, username=USER, password=PASSWORD, clock_skew_s=SKEW_S)
    async with device as dev:
        yield dev


def config(dev: OnvifDevice, **overrides: Any) -> dict[str, Any]:
    return {"kind": "onvif", "id": "gate-cam", "name": "北门", "grid": "440105001001", "host": dev.host,
            "port": dev.port, "username": USER, "password": PASSWORD, **overrides}


def camera(dev: OnvifDevice, **overrides: Any) -> OnvifCamera:
    adapter = create(config(dev, **overrides))
    assert isinstance(adapter, OnvifCamera)
    return adapter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EventTap:
    """Runs ``adapter.events()`` in a task; ``await tap.next()`` returns the next event."""

    def __init__(self, adapter: OnvifCamera) -> None:
        self.adapter = adapter
        self.queue: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for event in self.adapter.events():
            self.queue.put_nowait(event)

    async def __aenter__(self) -> EventTap:
        self.task = asyncio.create_task(self._run(), name="onvif-event-tap")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def subscribed(self, dev: OnvifDevice, count: int = 1, within: float = 10.0) -> None:
        """Wait until the adapter holds ``count`` subscriptions in total and one is live on the device."""
        deadline = time.monotonic() + within
        while not (dev.subscriptions and dev.calls["CreatePullPointSubscription"] >= count):
            assert time.monotonic() < deadline, f"no subscription #{count} within {within} s"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # let the first PullMessages reach the device

    async def next(self, within: float = 5.0) -> SourceEvent:
        return await asyncio.wait_for(self.queue.get(), within)

    async def nothing(self, for_s: float = 0.5) -> None:
        await asyncio.sleep(for_s)
        assert self.queue.empty(), f"unexpected event {self.queue.get_nowait()}"


# -- probe and errors --------------------------------------------------------------------------
async def test_probe_reads_device_profiles_and_clock(device: OnvifDevice) -> None:
    adapter = camera(device)
    t0 = time.perf_counter()
    info = await adapter.probe()
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await adapter.probe()
    again_s = time.perf_counter() - t0
    assert (info.manufacturer, info.model, info.firmware, info.serial) == (
        "Sanwang Test", "EMU-ONVIF-1", "1.2.3", "SN0001")
    assert info.capabilities == {Capability.STREAMS, Capability.SNAPSHOT, Capability.EVENTS, Capability.PTZ}
    assert info.extra["main_profile"] == "main" and info.extra["sub_profile"] == "sub"
    assert [(p["profile"], p["width"], p["height"]) for p in info.extra["profiles"]] == [
        ("main", 1280, 720), ("sub", 640, 360)]
    assert abs(info.extra["clock_offset_s"] - SKEW_S) < 3
    assert set(info.extra["services"]) == {"devicemgmt", "media", "events", "ptz"}
    assert again_s < 1.0, f"a warm probe took {again_s:.2f} s"
    print(f"probe: first {first_s * 1000:.0f} ms (WSDL load included), warm {again_s * 1000:.0f} ms")


@pytest.mark.parametrize("skew_s", [-3 * 3600.0, 0.0, 26 * 3600.0])
async def test_clock_offset_is_corrected(rtsp: RtspServer, skew_s: float) -> None:
    async with OnvifDevice(username=USER, password=PASSWORD, clock_skew_s=skew_s) as dev:
        info = await camera(dev).probe()
        assert abs(info.extra["clock_offset_s"] - skew_s) < 3
        assert dev.auth_failures == []
        if skew_s:  # the same camera refuses timestamps from our clock when nobody corrects them
            with pytest.raises(AdapterAuthError):
                await camera(dev, adjust_time=False).probe()
            assert "off the device clock" in dev.auth_failures[-1]


@pytest.mark.parametrize("status", [400, 401])
async def test_wrong_password_is_an_auth_error(rtsp: RtspServer, status: int) -> None:
    device = OnvifDevice(username=USER, password=PASSWORD, clock_skew_s=SKEW_S, auth_fault_status=status)
    async with device as dev:
        with pytest.raises(AdapterAuthError) as err:
            await camera(dev, password="not-the-password").probe()
        assert "not-the-password" not in str(err.value) and PASSWORD not in str(err.value)
        assert err.value.__cause__ is None and err.value.__context__ is not None  # raised `from None`
        assert dev.auth_failures[-1] == "wrong username or password"
        with pytest.raises(AdapterAuthError):
            async with camera(dev, username="intruder"):
                pass


async def test_camera_clock_set_while_connected(device: OnvifDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adapters.onvif_client._RESYNC_MIN_S", 0.0)
    async with camera(device) as adapter:
        assert (await adapter.command("presets"))["profile"] == "main"
        device.clock_skew_s = -600.0  # e.g. rebooted without NTP, or someone set the clock
        failures = len(device.auth_failures)
        assert (await adapter.command("presets"))["profile"] == "main"
        assert len(device.auth_failures) == failures + 1, "one refused request, then the clock is read again"
        assert abs(adapter.diagnostics()["clock_offset_s"] + 600) < 3
    with pytest.raises(AdapterAuthError):  # a wrong password stays an auth error: no retry loop
        async with camera(device, password="still-wrong"):
            pass


async def test_unreachable_port_is_a_connect_error(device: OnvifDevice) -> None:
    t0 = time.monotonic()
    with pytest.raises(AdapterConnectError):
        await camera(device, port=free_port()).probe()
    assert time.monotonic() - t0 < 5


async def test_silent_device_times_out_as_connect_error() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # accept the connection, never answer

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        t0 = time.monotonic()
        with pytest.raises(AdapterConnectError, match="timed out"):
            await create({"kind": "onvif", "id": "mute", "host": "127.0.0.1", "port": port, "timeout_s": 0.5,
                          "username": USER, "password": PASSWORD}).probe()
        assert time.monotonic() - t0 < 3
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_booting_device_is_not_ready(device: OnvifDevice) -> None:
    device.ready = False  # HTTP 503 to everything
    with pytest.raises(AdapterNotReady):
        await camera(device).probe()
    device.ready = True
    assert (await camera(device).probe()).model == "EMU-ONVIF-1"


async def test_device_without_ptz(rtsp: RtspServer) -> None:
    async with OnvifDevice(username=USER, password=PASSWORD, ptz=False) as dev:
        adapter = camera(dev)
        info = await adapter.probe()
        assert Capability.PTZ not in info.capabilities
        assert info.capabilities <= OnvifCamera.capabilities
        with pytest.raises(AdapterUnsupported):
            await adapter.command("goto_preset", preset="Gate")


async def test_emulator_answers_what_the_library_parses(device: OnvifDevice) -> None:
    session = OnvifSession(device.host, device.port, USER, PASSWORD, label="raw")
    await session.open()
    try:
        props = await session.call("events", "GetEventProperties")
        assert props.FixedTopicSet is True and "ConcreteSet" in props.TopicExpressionDialect[0]
        caps = await session.call("devicemgmt", "GetCapabilities", {"Category": "All"})
        assert caps.Events.WSPullPointSupport is True and caps.PTZ.XAddr.endswith("/onvif/ptz_service")
        with pytest.raises(AdapterNotReady, match="ActionNotSupported"):
            await session.call("devicemgmt", "GetHostname")
    finally:
        await session.close()
    assert device.calls["GetEventProperties"] == 1 and device.auth_failures == []


# -- streams --------------------------------------------------------------------------------------
async def test_streams_decode_from_the_real_rtsp_server(device: OnvifDevice, rtsp: RtspServer) -> None:
    async with camera(device) as adapter:
        streams = await adapter.streams()
    assert streams.main is not None and streams.sub is not None and streams.snapshot is not None
    assert streams.detection is streams.sub and streams.viewing is streams.main
    assert streams.main.url == rtsp.url("main") and streams.sub.url == rtsp.url("sub")  # credentials inserted
    assert (streams.sub.width, streams.sub.height, streams.sub.profile) == (640, 360, "sub")
    assert PASSWORD not in str(streams.to_json())

    reader = StreamReader("gate-cam", streams.detection.url, width=320, fps=5.0,
                          transport=streams.detection.transport)
    task = asyncio.create_task(reader.run())
    try:
        deadline = time.monotonic() + 15
        while reader.stats.sampled < 3:
            assert time.monotonic() < deadline, f"no frames from the sub stream: {reader.last_error}"
            await asyncio.sleep(0.05)
        frame = reader.latest()
        assert frame is not None and frame.source_size == (640, 360) and frame.size == (320, 180)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    main = await asyncio.to_thread(probe_url, streams.main)
    assert (main["width"], main["height"], main["codec"]) == (1280, 720, "h264")

    async with aiohttp.ClientSession() as http, http.get(streams.snapshot) as resp:
        assert resp.status == 200
        assert (await resp.read())[:2] == b"\xff\xd8"


async def test_explicit_profiles_and_udp(device: OnvifDevice) -> None:
    streams = await camera(device, main_profile="sub", sub_profile="sub", transport="udp").streams()
    assert streams.main is not None and streams.main.profile == "sub" and streams.sub is None
    assert streams.detection is streams.main and streams.main.transport == "udp"
    no_creds = await camera(device, rtsp_credentials=False).streams()
    assert no_creds.main is not None and "@" not in no_creds.main.url
    with pytest.raises(AdapterNotReady, match="no media profile 'missing'"):
        await camera(device, main_profile="missing").streams()


# -- events ---------------------------------------------------------------------------------------
async def test_device_events_become_typed_source_events(device: OnvifDevice) -> None:
    source = {"VideoSourceConfigurationToken": "vsc0", "VideoAnalyticsConfigurationToken": "va0"}
    async with camera(device) as adapter, EventTap(adapter) as tap:
        await tap.subscribed(device)
        device.emit(MOTION, {**source, "Rule": "MyMotionDetectorRule"}, {"IsMotion": "true"})
        motion = await tap.next()
        device.emit(MOTION, {**source, "Rule": "MyMotionDetectorRule"}, {"IsMotion": "true"})  # still on
        device.emit(MOTION, {**source, "Rule": "MyMotionDetectorRule"}, {"IsMotion": "false"})  # falling
        device.emit("tns1:Device/Trigger/Relay", {"RelayToken": "r0"}, {"LogicalState": "active"})  # unknown
        device.emit(TAMPER, {"Source": "vs0"}, {"State": "true"})
        tamper = await tap.next()
        device.emit(VIDEO_LOSS, {"Source": "vs0"}, {"State": "true"})
        loss = await tap.next()
        device.emit(LINE, {**source, "Rule": "北门绊线"}, {"ObjectId": "17"})
        line = await tap.next()
        device.emit(LINE, {**source, "Rule": "北门绊线"}, {"ObjectId": "18"})  # stateless: each one counts
        line2 = await tap.next()
        device.emit(FIELD, {**source, "Rule": "Yard", "Zone": "yard-east"}, {"IsInside": "true"})
        field = await tap.next()
        await tap.nothing(0.3)
        diag = adapter.diagnostics()["events"]

    assert [e.kind for e in (motion, tamper, loss, line, line2, field)] == [
        EventKind.MOTION, EventKind.TAMPER, EventKind.VIDEO_LOSS, EventKind.LINE_CROSSING,
        EventKind.LINE_CROSSING, EventKind.FIELD_DETECTION]
    for event in (motion, tamper, loss, line, field):
        assert event.source_id == "gate-cam" and event.grid == "440105001001"
        assert event.data["source"] == "camera"
        assert abs(event.at - time.time()) < 10  # our clock, not the camera's (two hours off)
    assert motion.data["topic"] == MOTION and motion.data["rule"] == "MyMotionDetectorRule"
    assert motion.data["video_source"] == "vsc0" and motion.data["items"]["IsMotion"] == "true"
    assert tamper.data["topic"] == TAMPER
    assert line.data["rule"] == "北门绊线" and line.data["items"]["ObjectId"] == "17"
    assert field.data["zone"] == "yard-east" and field.data["rule"] == "Yard"
    assert diag["unknown_topics"] == 1 and diag["unknown_samples"] == ["tns1:Device/Trigger/Relay"]
    assert diag["not_edges"] == 2 and diag["events"] == 6 and diag["state"] == "subscribed"
    assert device.calls["Unsubscribe"] == 1, "cancelling events() unsubscribes"


async def test_reboot_drops_the_subscription_and_the_adapter_resubscribes(
        device: OnvifDevice, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.onvif_events")
    async with camera(device) as adapter, EventTap(adapter) as tap:
        await tap.subscribed(device)
        device.emit(TAMPER, data={"State": "true"})
        assert (await tap.next()).kind is EventKind.TAMPER
        await device.reboot()  # subscriptions gone: the pending PullMessages gets a fault
        await tap.subscribed(device, count=2)
        # the camera re-announces the ongoing tamper as Initialized: already known, so no new event
        await tap.nothing(0.3)
        device.emit(LINE, data={"ObjectId": "1"})
        assert (await tap.next()).kind is EventKind.LINE_CROSSING
        await device.reboot(down_s=1.5)  # connections reset, then refused for 1.5 s
        await tap.subscribed(device, count=3, within=15)
        device.emit(FIELD, data={"IsInside": "true"})
        assert (await tap.next()).kind is EventKind.FIELD_DETECTION
        diag = adapter.diagnostics()["events"]
    assert diag["outages"] == 2 and diag["subscriptions"] == 3 and diag["failures"] >= 2
    lost = [r for r in caplog.records if "subscription lost" in r.getMessage()]
    assert len(lost) == 2, "one warning per outage, not per failed attempt"
    assert sum("restored" in r.getMessage() for r in caplog.records) == 2


async def test_subscription_is_renewed_before_it_expires(device: OnvifDevice) -> None:
    async with camera(device, subscription_s=2, pull_timeout_s=1) as adapter, EventTap(adapter) as tap:
        await tap.subscribed(device)
        await asyncio.sleep(4.5)  # more than two lifetimes
        device.emit(MOTION, data={"IsMotion": "true"})
        assert (await tap.next()).kind is EventKind.MOTION
        diag = adapter.diagnostics()["events"]
    assert device.calls["Renew"] >= 2 and diag["renewals"] >= 2
    assert device.calls["CreatePullPointSubscription"] == 1, "renewed, never lost"
    assert diag["lifetime_s"] == pytest.approx(2.0, abs=0.1)


async def test_events_off(device: OnvifDevice) -> None:
    adapter = camera(device, events=False)
    assert Capability.EVENTS not in (await adapter.probe()).capabilities
    async with adapter, EventTap(adapter) as tap:
        await asyncio.sleep(0.3)
        device.emit(MOTION, data={"IsMotion": "true"})
        await tap.nothing(0.3)
        assert tap.task is not None and not tap.task.done()
    assert device.calls["CreatePullPointSubscription"] == 0
    assert adapter.diagnostics()["events"]["state"] == "disabled"


def test_topic_mapping_ignores_vendor_prefixes() -> None:
    assert event_kind("tns1:VideoSource/MotionAlarm") is EventKind.MOTION
    assert event_kind("tns1:RuleEngine/tnsvendor:CellMotionDetector/Motion") is EventKind.MOTION
    assert event_kind("tns1:VideoSource/GlobalSceneChange/AnalyticsService") is EventKind.TAMPER
    assert event_kind("tns1:VideoSource/VideoLoss") is EventKind.VIDEO_LOSS
    assert event_kind("tns1:VideoSource/GlobalSceneChangeX") is None
    assert event_kind("tns1:Device/HardwareFailure/StorageFailure") is None
    mapper = EventMapper("cam", "", SubscriptionStats())
    first = mapper(Notification(MOTION, "Initialized", {"Rule": "r"}, {"IsMotion": "true"}))
    assert first is not None and first.data["initial"] is True and first.grid is None
    assert mapper(Notification(MOTION, "Initialized", {"Rule": "r"}, {"IsMotion": "true"})) is None
    assert mapper(Notification(MOTION, "Deleted", {"Rule": "r"}, {"IsMotion": "false"})) is None
    assert mapper(Notification(MOTION, "Changed", {"Rule": "r"}, {"IsMotion": "true"})) is not None


# -- PTZ and diagnostics ------------------------------------------------------------------------
async def test_goto_preset_by_name_token_or_alias(device: OnvifDevice) -> None:
    adapter = camera(device, ptz_presets={"north gate": "1"})
    listed = await adapter.command("presets")
    assert listed == {"profile": "main", "presets": [{"token": "1", "name": "Gate"},
                                                     {"token": "2", "name": "Parking lot"}]}
    async with adapter:
        assert (await adapter.command("goto_preset", preset="parking LOT"))["preset"] == "2"
        assert (await adapter.command("goto_preset", preset="1"))["name"] == "Gate"
        assert (await adapter.command("goto_preset", preset="north gate"))["preset"] == "1"
        with pytest.raises(AdapterError, match="no PTZ preset 'roof'"):
            await adapter.command("goto_preset", preset="roof")
        with pytest.raises(AdapterError, match="needs preset"):
            await adapter.command("goto_preset")
        with pytest.raises(AdapterUnsupported):
            await adapter.command("zoom_in")
    assert device.goto_calls == [("main", "2"), ("main", "1"), ("main", "1")]


async def test_diagnostics_have_state_but_no_password(device: OnvifDevice) -> None:
    async with camera(device) as adapter, EventTap(adapter) as tap:
        await adapter.probe()
        await adapter.streams()
        await tap.subscribed(device)
        diag = adapter.diagnostics()
    text = str(diag)
    assert PASSWORD not in text and diag["config"]["password"] == "***"
    assert diag["connected"] is True and abs(diag["clock_offset_s"] - SKEW_S) < 3
    assert diag["events"]["state"] == "subscribed" and diag["events"]["subscriptions"] == 1
    assert diag["streams"]["main"]["url"].startswith(f"rtsp://{USER}:***@")


def test_config_rejects_urls_as_host() -> None:
    with pytest.raises(ValueError, match="host name or IP"):
        OnvifCameraConfig.model_validate({"kind": "onvif", "id": "x", "host": "http://10.0.0.5/onvif"})
    raw = {"kind": "onvif", "id": "x", "host": " 10.0.0.5 ", "password": "pw"}
    cfg = OnvifCameraConfig.model_validate(raw)
    assert cfg.host == "10.0.0.5" and "pw" not in repr(cfg)


# -- conformance ------------------------------------------------------------------------------------
class TestOnvifConformance(AdapterConformance):
    @pytest.fixture
    async def adapter_case(self, device: OnvifDevice) -> AdapterCase:
        async def motion() -> None:
            device.emit(MOTION, data={"IsMotion": "false"})
            device.emit(MOTION, data={"IsMotion": "true"})

        return AdapterCase(
            config=config(device),
            secrets=[PASSWORD],
            trigger=motion,
            bad_auth={"password": "wrong-pass-123"},
            unreachable={"host": "127.0.0.1", "port": 9},
            section="cameras",
        )
