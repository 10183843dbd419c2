"""Camera outages and PTZ: offline alerts from real reader status on the bus, inhibition under an
uplink/NVR (real PostgreSQL), and a sensor-only alert turning a PTZ camera through a real ONVIF
SOAP exchange with an emulated camera."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.onvif import OnvifCamera
from adapters.registry import create
from alerts.camera_health import CameraWatch
from alerts.engine import AlertEngine
from alerts.evidence import EvidenceStore
from alerts.ptz import PresetMover, ptz_command
from alerts.settings import DispatchSection
from hub.bus import TOPIC_SOURCE_EVENT, Bus
from hub.config import AlertsSection, CameraConfig, DeviceConfig
from hub.events import EventKind, SourceEvent
from hub.metrics import Metrics
from hub.state import LiveState
from hub.storage import Database
from tests.alerts.helpers import FrameSlots
from tests.support import pg
from tests.support.onvif_device import OnvifDevice

pg_url = pg.pg_url

WINDOW_S = 120.0


def cam(id: str, uplink: str = "", grid: str = "440106001") -> CameraConfig:
    return CameraConfig(id=id, name=f"{id} camera", grid=grid, url=f"rtsp://127.0.0.1:8554/{id}",
                        uplink=uplink)


CAMERAS = [cam("a1", "nvr-1"), cam("a2", "nvr-1"), cam("a3", "nvr-1"), cam("b1", "nvr-2"), cam("solo")]


@dataclass
class Rig:
    bus: Bus
    db: Database
    engine: AlertEngine


@pytest.fixture
async def rig(pg_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    bus = Bus()
    evidence = EvidenceStore(tmp_path / "evidence", FrameSlots([c.id for c in CAMERAS]))
    async with Database(pg_url, timescaledb="off") as db:
        engine = AlertEngine(AlertsSection(), CAMERAS, [], bus, db, evidence, Metrics(), settle_s=0,
                             dispatch=DispatchSection(inhibit_window_s=WINDOW_S, group_window_s=0))
        task = asyncio.create_task(engine.run())
        await asyncio.sleep(0)
        try:
            yield Rig(bus, db, engine)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def incidents(url: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            b"SELECT kind, title, class, department, count FROM incidents ORDER BY opened_at")
        return await cur.fetchall()


async def test_cameras_behind_one_uplink_fold_into_one_uplink_incident(rig: Rig, pg_url: str) -> None:
    t = time.time() - 600
    await rig.engine.handle_camera_offline("a1", t, "connection refused")
    assert [r[0] for r in await incidents(pg_url)] == ["camera_offline"]  # one camera: its own incident
    await rig.engine.handle_camera_offline("a2", t + 5, "connection refused")
    await rig.engine.handle_camera_offline("a3", t + 9, "timeout")
    await rig.engine.handle_camera_offline("b1", t + 10, "timeout")  # another NVR: another incident
    await rig.engine.handle_camera_offline("solo", t + 11, "timeout")  # no uplink: its own
    got = await incidents(pg_url)
    assert [(r[0], r[4]) for r in got] == [("uplink_down", 3), ("camera_offline", 1), ("camera_offline", 1)]
    _, title, cls, department, _ = got[0]
    assert "nvr-1" in title and "3 cameras offline" in title
    assert (cls, department) == ("professional", "运维")
    full = await rig.db.list_incidents()
    folded = next(i for i in full if i["kind"] == "uplink_down")
    assert {s["id"] for s in folded["sources"]} == {"a1", "a2", "a3"}
    assert all(s["uplink"] == "nvr-1" for s in folded["sources"])

    # the same uplink failing again long after the window is a new outage
    await rig.engine.handle_camera_offline("a1", t + 11 + WINDOW_S + 150, "timeout")
    assert [r[0] for r in await incidents(pg_url)][-1] == "camera_offline"


async def test_the_nvrs_own_offline_opens_the_outage_and_its_cameras_join(rig: Rig, pg_url: str) -> None:
    t = time.time() - 300
    rig.bus.publish(TOPIC_SOURCE_EVENT, SourceEvent(source_id="nvr-2", kind=EventKind.DEVICE_OFFLINE, at=t,
                                                    grid="440106001", data={"reason": "availability"}))
    for _ in range(100):
        if await incidents(pg_url):
            break
        await asyncio.sleep(0.05)
    await rig.engine.handle_camera_offline("b1", t + 30, "timeout")
    got = await incidents(pg_url)
    assert len(got) == 1, got
    assert got[0][0] == "uplink_down" and got[0][4] == 2
    assert "1 cameras offline" in got[0][1]
    # a plain device going offline (not an uplink) raises nothing
    rig.bus.publish(TOPIC_SOURCE_EVENT, SourceEvent(source_id="door-9", kind=EventKind.DEVICE_OFFLINE, at=t))
    await asyncio.sleep(0.3)
    assert len(await incidents(pg_url)) == 1


async def test_inhibition_off_keeps_one_incident_per_camera(pg_url: str, tmp_path: Path) -> None:
    evidence = EvidenceStore(tmp_path / "evidence", FrameSlots([]))
    async with Database(pg_url, timescaledb="off") as db:
        engine = AlertEngine(AlertsSection(), CAMERAS, [], Bus(), db, evidence, settle_s=0,
                             dispatch=DispatchSection(inhibit_window_s=0, group_window_s=0))
        t = time.time() - 100
        for i, camera in enumerate(["a1", "a2", "a3"]):
            await engine.handle_camera_offline(camera, t + i, "timeout")
    assert [r[0] for r in await incidents(pg_url)] == ["camera_offline"] * 3


async def test_watch_raises_offline_after_the_delay_not_for_a_blip(pg_url: str, tmp_path: Path) -> None:
    """Reader status → LiveState → bus → CameraWatch → engine → PostgreSQL."""
    bus = Bus()
    state = LiveState(CAMERAS[:2], bus, Metrics())
    evidence = EvidenceStore(tmp_path / "evidence", FrameSlots([]))
    async with Database(pg_url, timescaledb="off") as db:
        engine = AlertEngine(AlertsSection(), CAMERAS[:2], [], bus, db, evidence, settle_s=0,
                             dispatch=DispatchSection(inhibit_window_s=WINDOW_S, group_window_s=0))
        state.camera_status("a2", True, "streaming")  # a1 never comes up
        watch = CameraWatch(CAMERAS[:2], bus, after_s=0.6, online=lambda c: state.cameras[c].online,
                            on_offline=engine.handle_camera_offline, on_online=engine.handle_camera_online)
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.05)
        state.camera_status("a2", False, "EOF")  # a blip: back before the delay
        await asyncio.sleep(0.2)
        state.camera_status("a2", True, "streaming")
        await asyncio.sleep(0.8)
        got = await incidents(pg_url)
        assert [r[0] for r in got] == ["camera_offline"] and "a1" in got[0][1]
        assert watch.alerted == {"a1"}

        state.camera_status("a2", False, "connection refused")  # a real outage on the same NVR
        await asyncio.sleep(0.9)
        got = await incidents(pg_url)
        assert [(r[0], r[4]) for r in got] == [("uplink_down", 2)], got

        state.camera_status("a1", True, "streaming")
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        full = await db.list_incidents()
        detail = await db.get_incident(full[0]["id"])
        assert detail is not None
        assert [h["note"] for h in detail["history"] if h["action"] == "recover"] == ["camera a1 back online"]
        assert watch.alerted == {"a2"}


# -- PTZ ------------------------------------------------------------------------------------------
@pytest.fixture
async def onvif() -> AsyncIterator[OnvifDevice]:
    async with OnvifDevice(username="operator", password="0nvif-S3cret!") as dev:
        yield dev


def ptz_camera(dev: OnvifDevice) -> OnvifCamera:
    adapter = create({"kind": "onvif", "id": "dome", "name": "北门球机", "grid": "440106001",
                      "host": dev.host, "port": dev.port, "username": "operator", "password": "0nvif-S3cret!",
                      "ptz_presets": {"north gate": "1"}})
    assert isinstance(adapter, OnvifCamera)
    return adapter


@dataclass
class Feed:  # what ptz_command reads from the hub's camera feeds
    adapter: Any


async def test_a_sensor_only_alert_turns_the_linked_ptz_camera(onvif: OnvifDevice, pg_url: str,
                                                               tmp_path: Path) -> None:
    dome = ptz_camera(onvif)
    cameras = [CameraConfig(id="dome", grid="440106001", url="rtsp://127.0.0.1:8554/dome"), cam("fixed")]
    devices = [DeviceConfig(id="gate", kind="door_contact", grid="440106001", topic="z2m/gate",
                            cameras=["dome", "fixed"], ptz_on_alert={"dome": "north gate"}),
               DeviceConfig(id="shed", kind="door_contact", grid="440106001", topic="z2m/shed",
                            cameras=["dome"], ptz_on_alert={"dome": "roof"})]
    evidence = EvidenceStore(tmp_path / "evidence", FrameSlots([]))
    async with dome, Database(pg_url, timescaledb="off") as db:
        mover = PresetMover(devices, ptz_command({"dome": Feed(dome)}), db, timeout_s=10)
        engine = AlertEngine(AlertsSection(), cameras, devices, Bus(), db, evidence, settle_s=0,
                             force_night=True, dispatch=DispatchSection(group_window_s=0), ptz=mover)
        now = time.time()
        for device, dt in [("gate", 0), ("gate", 2), ("shed", 3)]:
            await engine.handle_source_event(SourceEvent(source_id=device, kind=EventKind.DOOR_FORCED,
                                                         at=now + dt))
        await mover.wait()
        assert onvif.goto_calls == [("main", "1")]  # once per incident, by alias → token; "roof" is unknown
        assert (mover.moves, mover.failures) == (1, 1)
        notes = {}
        for inc in await db.list_incidents():
            detail = await db.get_incident(inc["id"])
            assert detail is not None
            notes[inc["sources"][0]["id"]] = [h["note"] for h in detail["history"] if h["action"] == "ptz"]
    assert notes["gate"] == ["PTZ dome → preset Gate (for gate)"]
    assert len(notes["shed"]) == 1 and "failed" in notes["shed"][0] and "roof" in notes["shed"][0]
    assert "0nvif-S3cret!" not in repr(notes)


async def test_an_unreachable_ptz_camera_does_not_hold_up_the_alert(pg_url: str, tmp_path: Path) -> None:
    devices = [DeviceConfig(id="gate", kind="door_contact", grid="440106001", topic="z2m/gate",
                            cameras=["solo"], ptz_on_alert={"solo": "1"})]

    async def hang(camera_id: str, name: str, **args: Any) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {}

    evidence = EvidenceStore(tmp_path / "evidence", FrameSlots([]))
    async with Database(pg_url, timescaledb="off") as db:
        mover = PresetMover(devices, hang, db, timeout_s=0.3)
        engine = AlertEngine(AlertsSection(), CAMERAS, devices, Bus(), db, evidence, settle_s=0,
                             force_night=True, ptz=mover)
        t0 = time.perf_counter()
        await engine.handle_source_event(SourceEvent(source_id="gate", kind=EventKind.DOOR_FORCED,
                                                     at=time.time()))
        assert time.perf_counter() - t0 < 0.25  # the incident is open before the camera answers
        assert len(await db.list_incidents()) == 1
        await mover.wait()
        assert mover.failures == 1
