"""AlertEngine end to end: real bus, real PostgreSQL, real image snapshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts.engine import TOPIC_INCIDENT_UPDATE, AlertEngine
from alerts.evidence import EvidenceStore
from alerts.settings import DispatchSection
from hub.bus import TOPIC_INCIDENT, TOPIC_RULE_HIT, TOPIC_SOURCE_EVENT, Bus, Subscription
from hub.config import AlertsSection, CameraConfig, DeviceConfig
from hub.events import EventKind, RuleHit, SourceEvent
from hub.metrics import Metrics
from hub.storage import Database
from tests.alerts.helpers import PEOPLE, FrameSlots
from tests.support import pg

pg_url = pg.pg_url

CAMERAS = [
    CameraConfig(id="cam1", name="East gate camera", grid="440106001", url="rtsp://127.0.0.1:8554/cam1"),
    CameraConfig(id="cam2", name="Yard camera", grid="440106002", url="rtsp://127.0.0.1:8554/cam2"),
]
DEVICES = [
    DeviceConfig(id="door1", name="East gate", kind="door_contact", grid="440106001", topic="z2m/door1",
                 cameras=["cam1"]),
]
SETTLE_S = 1.0


@dataclass
class Rig:
    bus: Bus
    db: Database
    engine: AlertEngine
    metrics: Metrics
    evidence_dir: Path
    incidents: Subscription
    updates: Subscription


@pytest.fixture
async def rig(pg_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    bus = Bus()
    metrics = Metrics()
    evidence = EvidenceStore(tmp_path / "evidence", FrameSlots(["cam1", "cam2"]))
    async with Database(pg_url, metrics=metrics) as db:
        engine = AlertEngine(AlertsSection(correlation_window_s=30, incident_quiet_s=120), CAMERAS, DEVICES,
                             bus, db, evidence, metrics, force_night=True, settle_s=SETTLE_S,
                             dispatch=DispatchSection(group_window_s=0))  # dedup per key; grouping below
        incidents = bus.subscribe(TOPIC_INCIDENT)
        updates = bus.subscribe(TOPIC_INCIDENT_UPDATE)
        task = asyncio.create_task(engine.run())
        await asyncio.sleep(0)  # let the engine subscribe
        try:
            yield Rig(bus, db, engine, metrics, tmp_path / "evidence", incidents, updates)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def person_hit(camera: str, captured_at: float, zone: str = "gate") -> RuleHit:
    return RuleHit(camera_id=camera, rule="intrusion", zone=zone, track_id=3, label="person", confidence=0.82,
                   box=tuple(float(v) for v in PEOPLE[0]), captured_at=captured_at,  # type: ignore[arg-type]
                   frame_seq=10)


def door_forced(at: float, device: str = "door1") -> SourceEvent:
    return SourceEvent(source_id=device, kind=EventKind.DOOR_FORCED, at=at, grid="440106001")


async def until(check: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def drain(sub: Subscription) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait()[1])
    return out


async def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(sql.encode())
        return await cur.fetchall()


@pytest.mark.parametrize("door_first", [False, True], ids=["person-then-door", "door-then-person"])
async def test_door_forced_and_person_on_linked_camera_make_one_incident(
        rig: Rig, pg_url: str, door_first: bool) -> None:
    now = time.time()
    msgs: list[tuple[str, Any]] = [(TOPIC_RULE_HIT, person_hit("cam1", now - 3)),
                                   (TOPIC_SOURCE_EVENT, door_forced(now))]
    if door_first:
        msgs.reverse()
    for topic, msg in msgs:
        rig.bus.publish(topic, msg)
        await asyncio.sleep(0.05)  # they arrive apart, not in one batch

    await until(lambda: _nonempty(rig.incidents))
    await asyncio.sleep(SETTLE_S + 0.3)  # nothing else may arrive on "incident"
    published = drain(rig.incidents)
    assert len(published) == 1
    inc = published[0]
    assert {(s["type"], s["id"]) for s in inc["sources"]} == {("camera", "cam1"), ("device", "door1")}
    assert inc["class"] == "emergency"  # forced door at night (force_night)
    assert inc["kind"] == "door_forced"
    assert inc["state"] == "dispatched"  # registered, classified and routed at once
    assert inc["grid"] == "440106001"
    snaps = [e for e in inc["evidence"] if e["kind"] == "snapshot"]
    assert snaps
    for e in snaps:
        assert (rig.evidence_dir / e["url"].removeprefix("/evidence/")).stat().st_size > 10_000

    await rig.db.flush()
    assert await rows(pg_url, "SELECT id, class, count FROM incidents") == [(inc["id"], "emergency", 2)]
    alerts = await rows(pg_url, "SELECT kind, incident_id FROM alerts ORDER BY kind")
    assert alerts == [("door_forced", inc["id"]), ("intrusion", inc["id"])]
    assert await rows(pg_url, "SELECT count(*) FROM events") == [(1,)]
    assert await rows(pg_url, "SELECT count(*) FROM rule_hits") == [(1,)]
    full = await rig.db.get_incident(inc["id"])
    assert full is not None
    upgraded = [] if door_first else ["upgrade"]  # the person opened it as general; the door raises it
    assert [h["action"] for h in full["history"]] == ["open", "classify", "dispatch", "correlate", *upgraded]
    assert rig.metrics.incidents.labels(kind=inc["kind"] if door_first else "intrusion")._value.get() == 1
    assert rig.metrics.latency._sum.get() > 0


async def _nonempty(sub: Subscription) -> bool:
    return not sub.queue.empty()


async def test_outside_the_window_makes_two_incidents(rig: Rig, pg_url: str) -> None:
    now = time.time()
    rig.bus.publish(TOPIC_RULE_HIT, person_hit("cam1", now - 60))  # 60 s apart, window 30 s
    rig.bus.publish(TOPIC_SOURCE_EVENT, door_forced(now))

    async def two() -> bool:
        return rig.incidents.queue.qsize() >= 2

    await until(two)
    published = drain(rig.incidents)
    assert len(published) == 2
    assert len({p["id"] for p in published}) == 2
    assert sorted(len(p["sources"]) for p in published) == [1, 1]
    by_kind = {p["kind"]: p for p in published}
    assert by_kind["door_forced"]["class"] == "emergency"
    assert by_kind["intrusion"]["class"] == "general"
    assert await rows(pg_url, "SELECT count(*) FROM incidents") == [(2,)]


async def test_repeated_hits_update_one_incident(rig: Rig, pg_url: str) -> None:
    now = time.time()
    for i in range(3):  # cam2 has no linked door: published at once, then updated
        rig.bus.publish(TOPIC_RULE_HIT, person_hit("cam2", now + i, zone="yard"))
    rig.bus.publish(TOPIC_RULE_HIT, person_hit("cam2", now + 1, zone="other-zone"))  # another zone

    async def done() -> bool:
        return rig.bus.published["alert"] == 4  # published after the incident is stored and sent

    await until(done)
    published = drain(rig.incidents)
    updates = drain(rig.updates)
    assert len(published) == 2  # zone "yard" and "other-zone"
    yard_id = next(p["id"] for p in published if p["sources"][0]["zone"] == "yard")
    yard = [u for u in updates if u["id"] == yard_id]
    assert [u["count"] for u in yard] == [2, 3]
    counts = await rows(pg_url, "SELECT count, jsonb_array_length(evidence), jsonb_array_length(sources) "
                                "FROM incidents ORDER BY count DESC")
    assert counts == [(3, 3, 1), (1, 1, 1)]
    assert rig.metrics.alerts.labels(kind="intrusion")._value.get() == 4


async def test_door_events_by_day_and_night(pg_url: str, tmp_path: Path) -> None:
    """door_opened alerts only at night; lock_failed_attempts and tamper always; others never."""
    bus = Bus()
    evidence = EvidenceStore(tmp_path, FrameSlots(["cam1"]))
    async with Database(pg_url) as db:
        day = AlertEngine(AlertsSection(), CAMERAS, DEVICES, bus, db, evidence, timezone="Asia/Shanghai",
                          settle_s=0)
        noon = 1740801600.0  # 2025-03-01 12:00 Asia/Shanghai
        await day.handle_source_event(SourceEvent("door1", EventKind.DOOR_OPENED, at=noon))
        await day.handle_source_event(SourceEvent("door1", EventKind.LOW_BATTERY, at=noon))
        assert day.stats["incidents"] == 0
        late = noon + 11 * 3600  # 23:00
        await day.handle_source_event(SourceEvent("door1", EventKind.DOOR_OPENED, at=late))
        await day.handle_source_event(SourceEvent("lock7", EventKind.LOCK_FAILED_ATTEMPTS, at=noon))
        await day.handle_source_event(SourceEvent("door1", EventKind.TAMPER, at=noon))
        assert day.stats["incidents"] == 3
        listed = {i["kind"]: i for i in await db.list_incidents()}
        assert set(listed) == {"door_opened", "lock_failed_attempts", "tamper"}
        assert listed["door_opened"]["class"] == "general"
        assert listed["tamper"]["class"] == "professional"
        assert listed["door_opened"]["evidence"]  # snapshot from the door's linked camera
        await db.flush()
        assert await rows(pg_url, "SELECT count(*) FROM events") == [(5,)]


async def test_milder_door_event_does_not_rename_a_forced_door_incident(rig: Rig) -> None:
    """Person, then the door forced, then the same door opened again: still 'Door forced'."""
    now = time.time()
    rig.bus.publish(TOPIC_RULE_HIT, person_hit("cam1", now - 2))
    await asyncio.sleep(0.05)
    rig.bus.publish(TOPIC_SOURCE_EVENT, door_forced(now))
    await asyncio.sleep(0.05)
    rig.bus.publish(TOPIC_SOURCE_EVENT,
                    SourceEvent(source_id="door1", kind=EventKind.DOOR_OPENED, at=now + 5, grid="440106001"))

    async def three_alerts() -> bool:
        return rig.bus.published["alert"] == 3

    await until(three_alerts)
    await rig.db.flush()
    listed = await rig.db.list_incidents()
    assert len(listed) == 1
    inc = listed[0]
    assert inc["kind"] == "door_forced"
    assert inc["class"] == "emergency"
    assert inc["title"].startswith("强行开门 Door forced")
    assert {s.get("kind") or s.get("rule") for s in inc["sources"]} == {"intrusion", "door_forced",
                                                                         "door_opened"}


@pytest.mark.parametrize("door_first", [False, True], ids=["person-then-door", "door-then-person"])
async def test_a_door_from_a_sources_adapter_fuses_through_the_cameras_its_events_name(
        rig: Rig, door_first: bool) -> None:
    """Doors not under devices: (an MQTT village system, a third-party adapter) link cameras per event."""
    now = time.time()
    door = SourceEvent(source_id="gate-north.door1", kind=EventKind.DOOR_FORCED, at=now, grid="440106002",
                       data={"name": "North gate", "cameras": ["cam2", "no-such-camera"]})
    if door_first:
        rig.bus.publish(TOPIC_SOURCE_EVENT, door)
        await asyncio.sleep(0.05)
        rig.bus.publish(TOPIC_RULE_HIT, person_hit("cam2", now + 1))
    else:
        # the hub learns the door's cameras from its first event; a person seen before that cannot fuse
        rig.bus.publish(TOPIC_SOURCE_EVENT, SourceEvent(
            source_id="gate-north.door1", kind=EventKind.DOOR_CLOSED, at=now - 60, data=door.data))
        await asyncio.sleep(0.05)
        rig.bus.publish(TOPIC_RULE_HIT, person_hit("cam2", now - 2))
        await asyncio.sleep(0.05)
        rig.bus.publish(TOPIC_SOURCE_EVENT, door)
    await until(lambda: _nonempty(rig.incidents))
    await asyncio.sleep(SETTLE_S + 0.3)
    published = drain(rig.incidents)
    assert len(published) == 1
    inc = published[0]
    sources = {(s["type"], s["id"]) for s in inc["sources"]}
    assert sources == {("camera", "cam2"), ("device", "gate-north.door1")}
    assert inc["class"] == "emergency"
    assert rig.engine.source_links == {"gate-north.door1": ["cam2"]}


async def test_a_cameras_own_field_detection_opens_an_incident_with_its_snapshot(rig: Rig) -> None:
    now = time.time()
    rig.bus.publish(TOPIC_SOURCE_EVENT, SourceEvent(
        source_id="cam2", kind=EventKind.FIELD_DETECTION, at=now, grid="440106002",
        data={"source": "camera", "rule": "MyFieldDetector",
              "topic": "tns1:RuleEngine/FieldDetector/ObjectsInside"}))
    await until(lambda: _nonempty(rig.incidents))
    (inc,) = drain(rig.incidents)
    assert inc["kind"] == "field_detection"
    assert inc["class"] == "professional"  # at night (force_night); general by day
    assert inc["title"].endswith("Yard camera")
    assert [e["camera_id"] for e in inc["evidence"]] == ["cam2"]


async def test_an_alarm_panel_zone_fuses_with_a_person_like_a_forced_door(rig: Rig) -> None:
    now = time.time()
    rig.bus.publish(TOPIC_SOURCE_EVENT, SourceEvent(
        source_id="panel.zone3", kind=EventKind.INTRUSION_ALARM, at=now, data={"cameras": ["cam1"]}))
    await asyncio.sleep(0.05)
    rig.bus.publish(TOPIC_RULE_HIT, person_hit("cam1", now + 1))
    await until(lambda: _nonempty(rig.incidents))
    await asyncio.sleep(SETTLE_S + 0.3)
    (inc,) = drain(rig.incidents)
    assert inc["class"] == "emergency"
    assert {s["id"] for s in inc["sources"]} == {"panel.zone3", "cam1"}


async def test_incidents_go_to_the_zones_grid_or_the_located_grid(rig: Rig) -> None:
    from alerts.grids import GridTree
    from hub.config_loader import parse_config

    cfg = parse_config("""
grids:
  - {code: "44", level: district}
  - {code: "4401", level: street, parent: "44", polygon: [[0, 0], [2, 0], [2, 2], [0, 2]]}
  - {code: "440101", level: grid, parent: "4401", polygon: [[0, 0], [1, 0], [1, 2], [0, 2]]}
cameras:
  - id: cam2
    url: rtsp://h/2
    location: [1.5, 1.0]
    zones:
      - {id: gate, grid: "440101", polygon: [[0, 0], [1, 0], [1, 1]]}
      - {id: yard, polygon: [[0, 0], [1, 0], [1, 1]]}
devices:
  - {id: door9, kind: door_contact, topic: t/door9, location: [0.5, 0.5]}
""", "g.yaml")
    rig.engine.grids = GridTree(cfg.grids).grid_map(cfg)
    now = time.time()
    rig.bus.publish(TOPIC_RULE_HIT, person_hit("cam2", now, zone="gate"))
    await until(lambda: _nonempty(rig.incidents))
    rig.bus.publish(TOPIC_RULE_HIT, person_hit("cam2", now, zone="yard"))
    await until(lambda: _nonempty(rig.incidents))
    rig.bus.publish(TOPIC_SOURCE_EVENT, SourceEvent(source_id="door9", kind=EventKind.DOOR_FORCED, at=now))
    await until(lambda: _nonempty(rig.incidents))
    await asyncio.sleep(0.2)
    by_source = {(inc["sources"][0]["id"], inc["sources"][0].get("zone")): inc["grid"]
                 for inc in drain(rig.incidents)}
    assert by_source == {("cam2", "gate"): "440101",  # the zone's own grid
                         ("cam2", "yard"): "4401",  # the camera's, found from its location
                         ("door9", None): "440101"}  # the device's, found from its location


async def test_silenced_alerts_are_stored_but_open_no_incident(pg_url: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from alerts.grids import GridTree
    from alerts.settings import GridConfig, SilenceConfig
    from alerts.silences import Silences
    from hub.storage import dispatch

    tree = GridTree([GridConfig(code="440106", level="district"),
                     GridConfig(code="440106001", level="street", parent="440106")])
    now = datetime.now(UTC)
    bus = Bus()
    evidence = EvidenceStore(tmp_path / "evidence", FrameSlots(["cam1", "cam2"]))
    async with Database(pg_url) as db:
        # config: the district is silenced for camera offline only; table: door1 for an hour
        district = SilenceConfig(grid="440106", kinds=["video_loss"], ends=now + timedelta(hours=1))
        silences = Silences([district], tree, db)
        async with db.pool.connection() as conn:
            await dispatch.add_silence(conn, grid=None, source="door1", kinds=[], starts=None,
                                       ends=now + timedelta(hours=1), reason="门禁检修 lock maintenance",
                                       created_by="op")
        engine = AlertEngine(AlertsSection(), CAMERAS, DEVICES, bus, db, evidence, force_night=True,
                             settle_s=0, silences=silences)
        await engine.handle_source_event(door_forced(time.time()))
        await engine.handle_source_event(door_forced(time.time(), device="door2"))
        await db.flush()
        assert await rows(pg_url, "SELECT source_id FROM alerts WHERE incident_id IS NULL") == [("door1",)]
        reason = await rows(pg_url, "SELECT data->'silenced'->>'reason' FROM alerts "
                                    "WHERE source_id = 'door1'")
        assert reason == [("门禁检修 lock maintenance",)]
        opened = await rows(pg_url, "SELECT kind FROM incidents")
        assert opened == [("door_forced",)]  # door2 only
        assert engine.stats["silenced"] == 1


async def test_alerts_of_one_kind_in_one_grid_fold_into_one_incident(pg_url: str, tmp_path: Path) -> None:
    bus = Bus()
    evidence = EvidenceStore(tmp_path / "evidence", FrameSlots(["cam1", "cam2"]))
    async with Database(pg_url) as db:
        engine = AlertEngine(AlertsSection(), CAMERAS, [], bus, db, evidence, force_night=True, settle_s=0,
                             dispatch=DispatchSection(group_window_s=60))
        t = time.time()
        await engine.handle_rule_hit(person_hit("cam1", t, zone="gate"))
        await engine.handle_rule_hit(person_hit("cam1", t + 20, zone="yard"))  # same grid, other zone: folds
        await engine.handle_rule_hit(person_hit("cam2", t + 25, zone="gate"))  # cam2 is in another grid
        await engine.handle_rule_hit(person_hit("cam1", t + 200, zone="lane"))  # same grid, window passed
        got = await rows(pg_url, "SELECT grid, count, jsonb_array_length(sources) FROM incidents "
                                 "ORDER BY opened_at")
        assert got == [("440106001", 2, 2), ("440106002", 1, 1), ("440106001", 1, 1)]
