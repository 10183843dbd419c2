"""hub.storage against the real local PostgreSQL (one fresh schema per test)."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from hub.errors import IncidentNotFound
from hub.events import EventKind, RuleHit, SourceEvent
from hub.metrics import Metrics
from hub.storage import Database
from tests.support import pg

pg_url = pg.pg_url


async def _count(url: str, table: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table}")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


def _hit(camera: str = "cam1", at: float | None = None) -> RuleHit:
    now = time.time() if at is None else at
    return RuleHit(camera_id=camera, rule="intrusion", zone="yard", track_id=7, label="person",
                   confidence=0.87, box=(10.0, 20.0, 110.0, 220.0), captured_at=now - 0.2, frame_seq=42,
                   at=now)


async def test_migrations_apply_once_and_concurrently(pg_url: str) -> None:
    async with Database(pg_url, migrate=False) as a, Database(pg_url, migrate=False) as b:
        first, second = await asyncio.gather(a.migrate(), b.migrate())
        assert sorted([first, second]) == [[], [1, 2, 3]]  # exactly one of them applied the migrations
        assert await a.migrate() == []
        assert a.timescale is False  # no TimescaleDB build on this server
        assert a.layout == b.layout == "partitioned"
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert await cur.fetchall() == [(1, "initial"), (2, "dispatch"), (3, "timeseries")]
        cur = await conn.execute("SELECT c.relname::text FROM pg_class c WHERE c.relkind = 'p' "
                                 "AND c.relnamespace = current_schema()::regnamespace ORDER BY 1")
        assert [r[0] for r in await cur.fetchall()] == ["events", "health_samples", "rule_hits",
                                                        "track_segments"]
        cur = await conn.execute("SELECT tablename FROM pg_indexes WHERE schemaname = current_schema() "
                                 "AND indexdef LIKE '%%USING brin%%'")
        brin = {r[0] for r in await cur.fetchall()}
        assert {"events", "rule_hits", "health_samples", "track_segments", "alerts"} <= brin


async def test_events_and_hits_idempotent_on_reinsert(pg_url: str) -> None:
    metrics = Metrics()
    ev = SourceEvent(source_id="door1", kind=EventKind.DOOR_FORCED, grid="440106001", data={"contact": False})
    hit = _hit()
    async with Database(pg_url, metrics=metrics) as db:
        for _ in range(3):
            await db.insert_event(ev)
            await db.insert_rule_hit(hit)
        await db.flush()
        assert await _count(pg_url, "events") == 1
        assert await _count(pg_url, "rule_hits") == 1
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute("SELECT source_id, kind, grid, data, extract(epoch FROM at) FROM events")
        row = await cur.fetchone()
        assert row is not None
        assert row[:4] == ("door1", "door_forced", "440106001", {"contact": False})
        assert abs(float(row[4]) - ev.at) < 1e-3
        cur = await conn.execute("SELECT box, frame_seq FROM rule_hits")
        assert await cur.fetchone() == ([10.0, 20.0, 110.0, 220.0], 42)
    assert metrics.db_writes.labels(table="events")._value.get() == 3  # attempted rows, conflicts included


async def test_close_flushes_pending_writes(pg_url: str) -> None:
    n = 2000
    async with Database(pg_url, batch_size=300) as db:
        for i in range(n):
            ev = SourceEvent(source_id=f"d{i % 7}", kind=EventKind.DOOR_OPENED, at=1.7e9 + i)
            await db.insert_event(ev)
        assert db.writes.pending > 0  # still queued when the block ends
    assert await _count(pg_url, "events") == n


async def test_incident_list_filters_and_shape(pg_url: str) -> None:
    async with Database(pg_url) as db:
        t0 = time.time() - 100
        await db.create_incident(id="i1", kind="intrusion", cls="general", grid="g1", title="Person in yard",
                                 opened_at=t0, sources=[{"type": "camera", "id": "cam1"}],
                                 evidence=[{"kind": "snapshot", "url": "/evidence/a.jpg"}])
        await db.create_incident(id="i2", kind="door_forced", cls="emergency", grid="g2", title="Door forced",
                                 opened_at=t0 + 10)
        await db.create_incident(id="i3", kind="tamper", cls="professional", grid="g1", title="Tamper",
                                 opened_at=t0 + 20)
        await db.update_incident("i3", state="accepted")

        all_ = await db.list_incidents()
        assert [i["id"] for i in all_] == ["i3", "i2", "i1"]  # newest first
        first = all_[2]
        assert set(first) >= {"id", "class", "state", "grid", "title", "opened_at", "updated_at", "sources",
                              "evidence"}
        assert first["class"] == "general"
        assert first["state"] == "received"
        assert first["sources"] == [{"type": "camera", "id": "cam1"}]
        assert first["evidence"] == [{"kind": "snapshot", "url": "/evidence/a.jpg"}]
        assert first["opened_at"].endswith("+00:00")

        assert [i["id"] for i in await db.list_incidents(grid="g1")] == ["i3", "i1"]
        assert [i["id"] for i in await db.list_incidents(cls="emergency")] == ["i2"]
        assert [i["id"] for i in await db.list_incidents(state="accepted")] == ["i3"]
        assert [i["id"] for i in await db.list_incidents(state="received", grid="g1")] == ["i1"]
        assert [i["id"] for i in await db.list_incidents(limit=1)] == ["i3"]
        future = time.time() + 3600
        assert await db.list_incidents(since=future) == []
        assert len(await db.list_incidents(since=t0 - 1)) == 3


async def test_update_incident_and_alert_rows(pg_url: str) -> None:
    async with Database(pg_url) as db:
        await db.create_incident(id="inc", kind="intrusion", sources=[{"type": "camera", "id": "c1"}])
        got = await db.update_incident("inc", count=3, last_seen=time.time(), cls="emergency",
                                       sources=[{"type": "camera", "id": "c1"},
                                                {"type": "device", "id": "d1"}])
        assert got["count"] == 3
        assert got["class"] == "emergency"
        assert len(got["sources"]) == 2
        with pytest.raises(ValueError, match="cannot update"):
            await db.update_incident("inc", id="other")
        with pytest.raises(IncidentNotFound):
            await db.update_incident("nope", count=2)
        await db.insert_alert(id="a1", at=time.time(), kind="intrusion", source_type="camera", source_id="c1",
                              rule="intrusion", zone="yard", incident_id="inc", data={"confidence": 0.9})
        await db.flush()
        assert await _count(pg_url, "alerts") == 1


async def test_failed_writes_are_retried_then_reported(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with Database(pg_url) as db:
        db.writes.retry_delay_s = 0.01
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            await conn.execute("ALTER TABLE events RENAME TO events_away")
            await db.insert_event(SourceEvent(source_id="d", kind=EventKind.TAMPER))
            await db.flush()
            await conn.execute("ALTER TABLE events_away RENAME TO events")
        assert db.writes.failed == 1
        assert "failed after 3 tries" in caplog.text
        await db.insert_event(SourceEvent(source_id="d", kind=EventKind.TAMPER))
        await db.flush()
        assert await _count(pg_url, "events") == 1


async def test_cancelled_hub_task_still_flushes(pg_url: str) -> None:
    """Ctrl-C cancels the hub's tasks; leaving the Database block must still write queued rows."""
    queued = asyncio.Event()

    async def hub_like() -> None:
        async with Database(pg_url) as db:
            for i in range(500):
                await db.insert_event(SourceEvent(source_id="d", kind=EventKind.DOOR_OPENED, at=1.7e9 + i))
            queued.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(hub_like())
    await queued.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _count(pg_url, "events") == 500
