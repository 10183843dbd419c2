"""Hourly rollups of the time series for the dashboard: counts per grid and kind, camera/device uptime.

* TimescaleDB: continuous aggregates with real-time aggregation (``materialized_only = false``),
  refreshed by a policy every 5 minutes over the last :data:`LATE_WINDOW` (late rows, e.g. a spool
  replayed after an outage, are picked up within that window).
* Partitioned PostgreSQL: plain tables with the same columns, refreshed by :func:`refresh_tables`
  (the hub's maintenance job) over the same window; reads add the raw rows past the watermark, as
  real-time aggregation does.

The query functions read either layout and return the same rows: hour buckets in UTC whose start
lies in ``[since, until)`` (both rounded up to the hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.AsyncConnection[Any]
LATE_WINDOW = timedelta(days=3)
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Rollup:
    name: LiteralString
    source: LiteralString
    time: LiteralString
    keys: LiteralString  # grouping columns, as in the source
    aggregates: LiteralString  # as in the source; each re-aggregates by sum()
    sums: LiteralString  # re-aggregation of the rollup's columns


ROLLUPS = (
    Rollup("events_hourly", "events", "at", "grid, kind", "count(*)::bigint AS n", "sum(n)::bigint AS n"),
    Rollup(
        "health_hourly",
        "health_samples",
        "at",
        "source_id",
        "count(*)::bigint AS samples, count(*) FILTER (WHERE online)::bigint AS online_samples, "
        "sum(fps)::float8 AS fps_sum, count(fps)::bigint AS fps_n",
        "sum(samples)::bigint AS samples, sum(online_samples)::bigint AS online_samples, "
        "sum(fps_sum)::float8 AS fps_sum, sum(fps_n)::bigint AS fps_n",
    ),
)
BY_NAME = {r.name: r for r in ROLLUPS}


def _bucket(r: Rollup, fn: LiteralString) -> LiteralString:
    return "SELECT " + fn + " AS bucket, " + r.keys + ", " + r.aggregates + " FROM " + r.source


# -- creation and refresh --------------------------------------------------------------------------
async def create_continuous(conn: Conn) -> None:
    """The continuous aggregates and their policies; a new one is materialised over all existing rows
    once (real-time aggregation only adds rows past the materialised part)."""
    for r in ROLLUPS:
        new = not await _is_continuous(conn, r.name)
        await conn.execute(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS " + r.name + " WITH (timescaledb.continuous, "
            "timescaledb.materialized_only = false) AS "
            + _bucket(r, "time_bucket(INTERVAL '1 hour', " + r.time + ")")
            + " GROUP BY bucket, "
            + r.keys
            + " WITH NO DATA"
        )
        await conn.execute(
            "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval, "
            "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes', "
            "if_not_exists => TRUE)",
            (r.name, LATE_WINDOW),
        )
        if new:
            await conn.execute(
                "CALL refresh_continuous_aggregate(%s::regclass, NULL, %s::timestamptz)",
                (r.name, _hour_floor(datetime.now(UTC))),
            )


async def create_tables(conn: Conn) -> None:
    for r in ROLLUPS:
        async with conn.transaction():
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS "
                + r.name
                + " AS "
                + _bucket(r, "now()")
                + " GROUP BY "
                + r.keys
                + " WITH NO DATA"
            )
            await conn.execute("CREATE INDEX IF NOT EXISTS " + r.name + "_bucket ON " + r.name + " (bucket)")


def _hour_floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(t: datetime) -> datetime:
    floor = _hour_floor(t)
    return floor if floor == t else floor + HOUR


async def refresh_tables(conn: Conn, *, now: datetime, window: timedelta = LATE_WINDOW) -> list[str]:
    """Partitioned layout: recompute the complete hours of the last ``window`` (and all hours never
    materialised); returns the rollups refreshed."""
    through = _hour_floor(now)
    done = []
    for r in ROLLUPS:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT through FROM rollup_watermarks WHERE name = %s FOR UPDATE", (r.name,)
            )
            row = await cur.fetchone()
            start = through - window
            if row is None:
                cur = await conn.execute("SELECT min(" + r.time + ") FROM " + r.source)
                first = (await cur.fetchone() or (None,))[0]
                start = _hour_floor(first) if first is not None else through
            else:
                start = min(start, row[0])
            await conn.execute(
                "DELETE FROM " + r.name + " WHERE bucket >= %s AND bucket < %s", (start, through)
            )
            await conn.execute(
                "INSERT INTO "
                + r.name
                + " "
                + _bucket(r, "date_trunc('hour', " + r.time + ", 'UTC')")
                + " WHERE "
                + r.time
                + " >= %s AND "
                + r.time
                + " < %s GROUP BY bucket, "
                + r.keys,
                (start, through),
            )
            await conn.execute(
                "INSERT INTO rollup_watermarks (name, through) VALUES (%s, %s) ON CONFLICT (name) "
                "DO UPDATE SET through = excluded.through",
                (r.name, through),
            )
        done.append(r.name)
    return done


async def refresh_continuous(conn: Conn, start: datetime | None, end: datetime | None) -> None:
    """TimescaleDB: materialise ``[start, end)`` now (backfills); the policy does it every 5 minutes."""
    for r in ROLLUPS:
        await conn.execute(
            "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
            (r.name, start, end),
        )


async def refresh(conn: Conn, *, now: datetime, window: timedelta = LATE_WINDOW) -> list[str]:
    """Materialise the complete hours of the last ``window`` in either layout (what the policy or the
    hourly job does)."""
    if await _is_continuous(conn, ROLLUPS[0].name):
        await refresh_continuous(conn, _hour_floor(now) - window, _hour_floor(now))
        return [r.name for r in ROLLUPS]
    return await refresh_tables(conn, now=now, window=window)


# -- reading (either layout) -------------------------------------------------------------------------
async def _is_continuous(conn: Conn, name: str) -> bool:
    from hub.storage.layout import relkind  # layout imports this module

    return await relkind(conn, name) == "v"


async def hourly(
    conn: Conn,
    name: LiteralString,
    since: datetime,
    until: datetime,
    *,
    where: LiteralString = "",
    params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The rollup's hour buckets starting in ``[since, until)``; ``where`` filters on its key columns."""
    r = BY_NAME[name]
    name = r.name
    args = {"lo": _hour_ceil(since), "hi": _hour_ceil(until), **(params or {})}
    cond: LiteralString = (" AND " + where) if where else ""
    if await _is_continuous(conn, name):
        query: LiteralString = (
            "SELECT bucket, "
            + r.keys
            + ", "
            + r.sums
            + " FROM "
            + name
            + " WHERE bucket >= %(lo)s AND bucket < %(hi)s"
            + cond
            + " GROUP BY bucket, "
            + r.keys
            + " ORDER BY bucket, "
            + r.keys
        )
    else:
        raw = _bucket(r, "date_trunc('hour', " + r.time + ", 'UTC')")
        query = (
            "WITH w AS (SELECT COALESCE((SELECT through FROM rollup_watermarks WHERE name = '" + name + "'), "
            "'-infinity'::timestamptz) AS through) "
            "SELECT bucket, " + r.keys + ", " + r.sums + " FROM ("
            " SELECT * FROM "
            + name
            + " WHERE bucket >= %(lo)s AND bucket < LEAST(%(hi)s, (SELECT through FROM w))"
            " UNION ALL "
            + raw
            + " WHERE "
            + r.time
            + " >= GREATEST(%(lo)s, (SELECT through FROM w)) AND "
            + r.time
            + " < %(hi)s GROUP BY bucket, "
            + r.keys
            + ") x WHERE TRUE"
            + cond
            + " GROUP BY bucket, "
            + r.keys
            + " ORDER BY bucket, "
            + r.keys
        )
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, args)
    return await cur.fetchall()


async def events_per_hour(
    conn: Conn, since: datetime, until: datetime, grids: list[str] | None = None
) -> list[dict[str, Any]]:
    """``[{bucket, grid, kind, n}]``: source events per hour, grid and kind."""
    if grids is None:
        return await hourly(conn, "events_hourly", since, until)
    return await hourly(
        conn, "events_hourly", since, until, where="grid = ANY(%(grids)s)", params={"grids": grids}
    )


async def uptime_per_hour(
    conn: Conn, since: datetime, until: datetime, sources: list[str] | None = None
) -> list[dict[str, Any]]:
    """``[{bucket, source_id, samples, online_samples, fps_sum, fps_n}]`` from health samples."""
    if sources is None:
        return await hourly(conn, "health_hourly", since, until)
    return await hourly(
        conn, "health_hourly", since, until, where="source_id = ANY(%(sources)s)", params={"sources": sources}
    )
