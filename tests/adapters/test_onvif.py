"""The ONVIF adapter against an emulated camera speaking real SOAP 1.2 over HTTP, whose stream URIs
point at a real RTSP server: probe, errors, clock skew, streams → frames, PTZ presets, diagnostics and
the adapter conformance suite. Device events are in test_onvif_events.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import aiohttp
import pytest

from adapters.base import Capability
from adapters.generic import probe_url
from adapters.onvif import OnvifCamera, OnvifCameraConfig
from adapters.onvif_client import OnvifSession
from adapters.registry import create
from hub.errors import (
    AdapterAuthError,
    AdapterConnectError,
    AdapterError,
    AdapterNotReady,
    AdapterUnsupported,
)
from streams.reader import StreamReader
from tests.adapters import onvif_support
from tests.adapters.conformance import AdapterCase, AdapterConformance
from tests.adapters.onvif_support import MOTION, PASSWORD, SKEW_S, USER, EventTap, camera, config
from tests.support.onvif_device import OnvifDevice
from tests.support.rtsp import RtspServer

rtsp = onvif_support.rtsp
device = onvif_support.device


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])



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
            restart_peer=lambda: device.reboot(down_s=1.0),
            bad_auth={"password": "wrong-pass-123"},
            unreachable={"host": "127.0.0.1", "port": 9},
            section="cameras",
        )
