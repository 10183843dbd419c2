"""The time-series layout contract: partitions (plain PostgreSQL) or hypertables (TimescaleDB), the same
hourly rollups, the same answers. Runs on the real PostgreSQL here and on a real TimescaleDB (PGlite)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from hub.storage import layout, rollups
from hub.storage.database import Database
from tests.support import pg, timescale

pg_url = pg.pg_url
timescale_server = timescale.timescale_server
timescale_schema_url = timescale.timescale_schema_url

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
DEVICES = [(f"door-{i}", f"G{i % 3}") for i in range(6)]
KINDS = ("door_opened", "door_forced", "lock_failed_attempts")


def history(days: int = 4, step_min: int = 10, seed: int = 3) -> list[tuple[Any, ...]]:
    """Event rows (id, at, source_id, kind, grid, data) for the last ``days`` before NOW."""
    rnd = random.Random(seed)
    rows = []
    t = NOW - timedelta(days=days)
    n = 0
    while t < NOW:
        for dev, grid in DEVICES:
            if rnd.random() < 0.6:
                n += 1
                at = t + timedelta(seconds=rnd.randrange(600))
                at = min(at, NOW - timedelta(seconds=1))
                rows.append((f"e{n}", at, dev, rnd.choice(KINDS), grid, "{}"))
        t += timedelta(minutes=step_min)
    return rows


Buckets = Counter[tuple[datetime, str, str]]


def truth(rows: list[tuple[Any, ...]], since: datetime, until: datetime) -> Buckets:
    out: Buckets = Counter()
    for _id, at, _dev, kind, grid, _ in rows:
        bucket = at.replace(minute=0, second=0, microsecond=0)
        if since <= bucket < until:
            out[bucket, grid, kind] += 1
    return out


async def insert(conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> None:
    """Multi-row INSERTs of 200 (no COPY, no pipelined executemany: the same on PGlite and PostgreSQL)."""
    for i in range(0, len(rows), 200):
        chunk = rows[i:i + 200]
        values = sql.SQL(", ").join(sql.SQL("(%s, %s, %s, %s, %s, %s::jsonb)") for _ in chunk)
        await conn.execute(sql.SQL("INSERT INTO events (id, at, source_id, kind, grid, data) VALUES {} "
                                   "ON CONFLICT DO NOTHING").format(values), [v for r in chunk for v in r])


@pytest.fixture
async def partitioned(pg_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with Database(pg_url, timescaledb="off", retention={"events": 3}) as db:
        assert db.layout == "partitioned"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        yield conn


async def test_rows_land_in_day_partitions_and_the_default_catches_the_rest(
        partitioned: psycopg.AsyncConnection[Any]) -> None:
    conn = partitioned
    old = datetime(2020, 1, 1, 5, tzinfo=UTC)  # a device with a wrong clock
    await insert(conn, [("x", old, "door-0", "door_opened", "G0", "{}")])
    cur = await conn.execute("SELECT tableoid::regclass::text FROM events WHERE id = 'x'")
    assert (await cur.fetchone()) == ("events_default",)
    made = await layout.ensure_partitions(conn, "events", [old])
    assert made == ["events_p20200101"]
    cur = await conn.execute("SELECT tableoid::regclass::text FROM events WHERE id = 'x'")
    assert (await cur.fetchone()) == ("events_p20200101",)  # moved out of the default partition
    assert await layout.ensure_partitions(conn, "events", [old]) == []  # idempotent


async def test_maintenance_makes_days_ahead_and_drops_past_retention(
        partitioned: psycopg.AsyncConnection[Any]) -> None:
    conn = partitioned
    rows = history(days=6)
    await layout.ensure_partitions(conn, "events", [r[1] for r in rows])
    await insert(conn, rows)
    report = await layout.maintain(conn, retention={"events": 3}, now=NOW)
    names = [p[0] for p in await layout.partitions(conn, "events")]
    assert "events_p20260313" in names  # NOW + AHEAD_DAYS
    assert "events_p20260306" not in names and "events_p20260304" not in names  # ended before NOW - 3 days
    assert {"events_p20260304", "events_p20260305", "events_p20260306"} <= set(report["dropped"])
    cur = await conn.execute("SELECT min(at) FROM events")
    oldest = (await cur.fetchone())[0]  # type: ignore[index]
    assert oldest >= datetime(2026, 3, 7, tzinfo=UTC)
    assert report["refreshed"] == ["events_hourly", "health_hourly"]


@pytest.fixture
async def hypertables(timescale_schema_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """The same schema on a real TimescaleDB (PGlite: one connection at a time, so pool_size=1)."""
    async with Database(timescale_schema_url, pool_size=1, retention={"events": 3}) as db:
        assert db.layout == "timescaledb"
    async with await psycopg.AsyncConnection.connect(timescale_schema_url, autocommit=True) as conn:
        yield conn


async def test_rollups_answer_like_the_raw_rows_on_partitions(
        partitioned: psycopg.AsyncConnection[Any]) -> None:
    rows = history(days=3)
    await layout.ensure_partitions(partitioned, "events", [r[1] for r in rows])
    await rollups_contract(partitioned, rows)


async def test_rollups_answer_like_the_raw_rows_on_timescaledb(
        hypertables: psycopg.AsyncConnection[Any]) -> None:
    await rollups_contract(hypertables, history(days=3))


async def rollups_contract(conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> None:
    """Before any refresh, after one, with a late row inside the window and a new one: same as raw."""
    await insert(conn, rows)
    since, until = (NOW - timedelta(days=3)).replace(minute=0), NOW + timedelta(hours=1)

    async def answer(grids: list[str] | None = None) -> Buckets:
        got = await rollups.events_per_hour(conn, since, until, grids)
        return Counter({(r["bucket"], r["grid"], r["kind"]): r["n"] for r in got})

    expected = truth(rows, since, until)
    assert await answer() == expected  # nothing materialised yet (or all of it: a new aggregate)
    mid = await rollups.events_per_hour(conn, since + timedelta(minutes=1), until)  # buckets *starting* after
    assert min(r["bucket"] for r in mid) == since + timedelta(hours=1)
    await rollups.refresh(conn, now=NOW)
    assert await answer() == expected  # materialised up to NOW's hour + the raw tail
    # a late row (a spool replayed after an outage) two hours back, and a new one now
    late = [("late", NOW - timedelta(hours=2), "door-1", "door_forced", "G1", "{}"),
            ("new", NOW - timedelta(minutes=1), "door-2", "door_opened", "G2", "{}")]
    await insert(conn, late)
    rows += late
    # before the next refresh: the new row counts at once (past the watermark), the late one not yet
    assert await answer() == truth([r for r in rows if r[0] != "late"], since, until)
    expected = truth(rows, since, until)
    await rollups.refresh(conn, now=NOW)
    assert await answer() == expected
    g1 = await answer(["G1"])
    assert g1 == Counter({k: v for k, v in expected.items() if k[1] == "G1"})



async def test_timescaledb_gets_hypertables_policies_and_reports_status(
        hypertables: psycopg.AsyncConnection[Any]) -> None:
    conn = hypertables
    cur = await conn.execute("SELECT hypertable_name::text FROM timescaledb_information.hypertables "
                             "WHERE hypertable_schema = current_schema() ORDER BY 1")
    assert [r[0] for r in await cur.fetchall()] == ["events", "health_samples", "rule_hits", "track_segments"]
    cur = await conn.execute(
        "SELECT hypertable_name::text, proc_name::text, config->>'drop_after', config->>'compress_after' "
        "FROM timescaledb_information.jobs WHERE hypertable_schema = current_schema() "
        "AND proc_name IN ('policy_retention', 'policy_compression') ORDER BY 1, 2")
    jobs = {(t, p): (drop, comp) for t, p, drop, comp in await cur.fetchall()}
    assert jobs["events", "policy_retention"][0] == "3 days"  # database.retention_days
    assert jobs["track_segments", "policy_retention"][0] == "30 days"  # the default
    assert jobs["events", "policy_compression"][1] == "7 days"
    cur = await conn.execute("SELECT attname::text FROM timescaledb_information.compression_settings "
                             "WHERE hypertable_schema = current_schema() AND hypertable_name = 'events' "
                             "AND segmentby_column_index = 1")
    assert (await cur.fetchone()) == ("source_id",)
    rows = history(days=6)
    await insert(conn, rows)
    info = await layout.status(conn)
    assert info["layout"] == "timescaledb"
    events = next(t for t in info["tables"] if t["table"] == "events")
    assert events["parts"] >= 6 and events["bytes"] > 0
    # retention: the policy drops whole days past 3 days (PGlite runs jobs only when asked)
    cur = await conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_schema = "
                             "current_schema() AND hypertable_name = 'events' "
                             "AND proc_name = 'policy_retention'")
    job = (await cur.fetchone())[0]  # type: ignore[index]
    recent = [(f"r{i}", datetime.now(UTC) - timedelta(hours=i), "door-0", "door_opened", "G0", "{}")
              for i in range(3)]
    await insert(conn, recent)
    await conn.execute("CALL run_job(%s)", (job,))  # counts from the real clock: March 2026 is long gone
    cur = await conn.execute("SELECT id FROM events ORDER BY id")
    assert [r[0] for r in await cur.fetchall()] == ["r0", "r1", "r2"]
