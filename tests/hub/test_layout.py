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

from hub.storage import layout, rollups
from hub.storage.database import Database
from tests.support import pg

pg_url = pg.pg_url

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
                rows.append((f"e{n}", min(at, NOW - timedelta(seconds=1)), dev, rnd.choice(KINDS), grid, "{}"))
        t += timedelta(minutes=step_min)
    return rows


def truth(rows: list[tuple[Any, ...]], since: datetime, until: datetime) -> Counter[tuple[datetime, str, str]]:
    out: Counter[tuple[datetime, str, str]] = Counter()
    for _id, at, _dev, kind, grid, _ in rows:
        bucket = at.replace(minute=0, second=0, microsecond=0)
        if since <= bucket < until:
            out[bucket, grid, kind] += 1
    return out


async def insert(conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> None:
    async with conn.cursor() as cur:
        for i in range(0, len(rows), 200):
            await cur.executemany("INSERT INTO events (id, at, source_id, kind, grid, data) "
                                  "VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING", rows[i:i + 200])


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


async def test_rollups_answer_like_the_raw_rows_before_and_after_refresh_and_late_rows(
        partitioned: psycopg.AsyncConnection[Any]) -> None:
    conn = partitioned
    rows = history(days=3)
    await layout.ensure_partitions(conn, "events", [r[1] for r in rows])
    await insert(conn, rows)
    since, until = (NOW - timedelta(days=3)).replace(minute=0), NOW + timedelta(hours=1)

    async def answer(grids: list[str] | None = None) -> Counter[tuple[datetime, str, str]]:
        got = await rollups.events_per_hour(conn, since, until, grids)
        return Counter({(r["bucket"], r["grid"], r["kind"]): r["n"] for r in got})

    expected = truth(rows, since, until)
    assert await answer() == expected  # nothing materialised yet: all raw
    mid = await rollups.events_per_hour(conn, since + timedelta(minutes=1), until)  # buckets *starting* after
    assert min(r["bucket"] for r in mid) == since + timedelta(hours=1)
    await rollups.refresh_tables(conn, now=NOW)
    assert await answer() == expected  # materialised up to NOW's hour + the raw tail
    # a late row (a spool replayed after an outage) two hours back, and a new one now
    late = [("late", NOW - timedelta(hours=2), "door-1", "door_forced", "G1", "{}"),
            ("new", NOW - timedelta(minutes=1), "door-2", "door_opened", "G2", "{}")]
    await insert(conn, late)
    rows += late
    expected = truth(rows, since, until)
    await rollups.refresh_tables(conn, now=NOW)
    assert await answer() == expected
    g1 = await answer(["G1"])
    assert g1 == Counter({k: v for k, v in expected.items() if k[1] == "G1"})

