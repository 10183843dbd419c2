"""How the time-series tables are laid out: TimescaleDB hypertables, or native range partitions.

The tables of :data:`TS_TABLES` are created plain by the migrations (time column in every unique
key). :func:`setup` then makes them

* **TimescaleDB** hypertables (when ``CREATE EXTENSION timescaledb`` works): compression segmented
  by device/camera after ``compress_after_days``, a retention policy per table, and the hourly
  rollups of :mod:`hub.storage.rollups` as continuous aggregates with real-time aggregation; or
* **partitioned** (plain PostgreSQL): ``PARTITION BY RANGE`` on the time column with one partition
  per UTC day (``<table>_pYYYYMMDD``), BRIN indexes on time, partitions created ahead and dropped
  after the retention by :func:`maintain` (the hub runs it hourly), and the rollups as tables
  refreshed by that job.

Both layouts answer the same queries with the same results (:mod:`hub.storage.rollups`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, LiteralString

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

Layout = Literal["timescaledb", "partitioned"]
AHEAD_DAYS = 3  # partitions made in advance (partitioned layout)


@dataclass(frozen=True, slots=True)
class TsTable:
    name: str
    time_column: str
    segment_by: str  # TimescaleDB compression segment (the device or camera)
    retention_days: int  # default; database.retention overrides


TS_TABLES = (
    TsTable("events", "at", "source_id", 365),
    TsTable("rule_hits", "at", "camera_id", 180),
    TsTable("health_samples", "at", "source_id", 30),
    TsTable("track_segments", "started_at", "camera_id", 30),
)
BY_NAME = {t.name: t for t in TS_TABLES}

Conn = psycopg.AsyncConnection[Any]


async def _one(conn: Conn, query: LiteralString | sql.Composed, params: tuple[Any, ...] = ()) -> Any:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return row[0] if row else None


async def has_timescale(conn: Conn) -> bool:
    return bool(await _one(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"))


async def current_layout(conn: Conn) -> Layout | None:
    """What ``events`` is now: a hypertable, a partitioned table, or (None) still plain."""
    if await has_timescale(conn) and await _one(
        conn,
        "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'events' "
        "AND hypertable_schema = current_schema()",
    ):
        return "timescaledb"
    return "partitioned" if await relkind(conn, "events") == "p" else None


async def relkind(conn: Conn, name: str) -> str | None:
    """``pg_class.relkind`` of ``name`` in the current schema (r table, p partitioned, v view — a
    continuous aggregate —), None when there is no such relation."""
    kind = await _one(
        conn,
        "SELECT c.relkind::text FROM pg_class c WHERE c.relname = %s "
        "AND c.relnamespace = current_schema()::regnamespace",
        (name,),
    )
    return str(kind) if kind is not None else None


def retention_of(table: TsTable, retention: Mapping[str, int]) -> int:
    return int(retention.get(table.name, table.retention_days))


async def setup(
    conn: Conn,
    mode: Literal["auto", "off"],
    *,
    retention: Mapping[str, int] | None = None,
    compress_after_days: int = 7,
    now: datetime | None = None,
) -> Layout:
    """Lay out the time-series tables (idempotent; an autocommit connection holding the migration lock)."""
    retention = retention or {}
    layout = await current_layout(conn)
    if layout is None:
        layout = "timescaledb" if mode == "auto" and await _try_timescale(conn) else "partitioned"
    elif layout == "partitioned" and mode == "auto" and not await has_timescale(conn):
        await _try_timescale(conn)  # only noted: converting partitions to hypertables is a manual step
    from hub.storage import rollups

    if layout == "timescaledb":
        for table in TS_TABLES:
            await _hypertable(conn, table, retention_of(table, retention), compress_after_days)
        await rollups.create_continuous(conn)
    else:
        for table in TS_TABLES:
            await _partition(conn, table, now or datetime.now(UTC))
        await rollups.create_tables(conn)
    return layout


async def _try_timescale(conn: Conn) -> bool:
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.info(
            "TimescaleDB not available (%s): native range partitions, BRIN indexes, rollup tables", first
        )
        return False
    return True


# -- TimescaleDB ---------------------------------------------------------------------------------
async def _hypertable(conn: Conn, table: TsTable, keep_days: int, compress_after_days: int) -> None:
    async with conn.transaction():
        await conn.execute(
            "SELECT create_hypertable(%s::regclass, %s::name, chunk_time_interval => "
            "INTERVAL '1 day', if_not_exists => TRUE, migrate_data => TRUE)",
            (table.name, table.time_column),
        )
        await conn.execute(
            sql.SQL(
                "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby "
                "= {}, timescaledb.compress_orderby = {})"
            ).format(
                sql.Identifier(table.name),
                sql.Literal(table.segment_by),
                sql.Literal(f"{table.time_column} DESC"),
            )
        )
        await conn.execute("SELECT remove_compression_policy(%s::regclass, if_exists => TRUE)", (table.name,))
        await conn.execute(
            "SELECT add_compression_policy(%s::regclass, %s::interval)",
            (table.name, timedelta(days=compress_after_days)),
        )
        await conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => TRUE)", (table.name,))
        await conn.execute(
            "SELECT add_retention_policy(%s::regclass, %s::interval)", (table.name, timedelta(days=keep_days))
        )


# -- native partitions ---------------------------------------------------------------------------
def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


async def _partition(conn: Conn, table: TsTable, now: datetime) -> None:
    """Turn the plain table into a range-partitioned one (keeping its rows), once."""
    if await relkind(conn, table.name) == "p":
        return
    name, plain = sql.Identifier(table.name), sql.Identifier(f"{table.name}_plain")
    async with conn.transaction():
        await conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(name, plain))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                "INCLUDING INDEXES) PARTITION BY RANGE ({})"
            ).format(name, plain, sql.Identifier(table.time_column))
        )
        await conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                sql.Identifier(f"{table.name}_default"), name
            )
        )
        cur = await conn.execute(
            sql.SQL("SELECT DISTINCT ({} AT TIME ZONE 'UTC')::date FROM {}").format(
                sql.Identifier(table.time_column), plain
            )
        )
        days = {row[0] for row in await cur.fetchall()} | {
            now.date() + timedelta(days=i) for i in range(AHEAD_DAYS + 1)
        }
        for day in sorted(days):
            await _ensure_day(conn, table.name, day)
        await conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(name, plain))
        await conn.execute(sql.SQL("DROP TABLE {}").format(plain))
    log.info("%s: range-partitioned by day on %s", table.name, table.time_column)


async def _ensure_day(conn: Conn, table: str, day: date) -> bool:
    """The partition of ``table`` for UTC ``day`` (rows already in the default partition move into it)."""
    part = partition_name(table, day)
    if await relkind(conn, part) is not None:
        return False
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hi = lo + timedelta(days=1)
    t, tbl, p = sql.Identifier(BY_NAME[table].time_column), sql.Identifier(table), sql.Identifier(part)
    try:
        async with conn.transaction():
            await conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(p, tbl)
            )
            await conn.execute(
                sql.SQL(
                    "WITH moved AS (DELETE FROM {} WHERE {} >= %s AND {} < %s RETURNING *) "
                    "INSERT INTO {} SELECT * FROM moved"
                ).format(sql.Identifier(f"{table}_default"), t, t, p),
                (lo, hi),
            )
            await conn.execute(
                sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                    tbl, p, sql.Literal(lo), sql.Literal(hi)
                )
            )
    except psycopg.errors.DuplicateTable:
        return False  # another hub made it just now
    return True


async def _ensure(conn: Conn, table: str, start: date, end: date) -> list[str]:
    made = []
    day = start
    while day <= end:
        if await _ensure_day(conn, table, day):
            made.append(partition_name(table, day))
        day += timedelta(days=1)
    return made


async def ensure_partitions(conn: Conn, table: str, times: Iterable[datetime]) -> list[str]:
    """Partitions for the UTC days of ``times`` (rows from a device with a wrong clock, a spool replay)."""
    days = sorted({t.astimezone(UTC).date() for t in times})
    return [partition_name(table, day) for day in days if await _ensure_day(conn, table, day)]


async def partitions(conn: Conn, table: str) -> list[tuple[str, datetime, datetime]]:
    """(name, from, to) of ``table``'s day partitions, oldest first (not the default one)."""
    cur = await conn.execute(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
        (table,),
    )
    out = []
    for name, bound in await cur.fetchall():
        if "FROM ('" not in bound:
            continue  # the DEFAULT partition
        lo, hi = bound.split("FROM ('", 1)[1].split("') TO ('", 1)
        out.append((str(name), datetime.fromisoformat(lo), datetime.fromisoformat(hi.split("')", 1)[0])))
    return sorted(out, key=lambda p: p[1])


async def maintain(
    conn: Conn, *, retention: Mapping[str, int] | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Partitioned layout: create the coming days' partitions, drop those past the retention, refresh
    the rollups. (TimescaleDB runs its own policies; this then only reports.)"""
    now = now or datetime.now(UTC)
    report: dict[str, Any] = {"created": [], "dropped": [], "refreshed": []}
    if await current_layout(conn) != "partitioned":
        return report
    from hub.storage import rollups

    for table in TS_TABLES:
        report["created"] += await _ensure(
            conn, table.name, now.date(), now.date() + timedelta(days=AHEAD_DAYS)
        )
        horizon = now - timedelta(days=retention_of(table, retention or {}))
        for name, _lo, hi in await partitions(conn, table.name):
            if hi <= horizon:
                await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
                report["dropped"].append(name)
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE {} < %s").format(
                sql.Identifier(f"{table.name}_default"), sql.Identifier(table.time_column)
            ),
            (horizon,),
        )
    report["refreshed"] = await rollups.refresh_tables(conn, now=now)
    if report["created"] or report["dropped"]:
        log.info(
            "storage maintenance: %d partitions created, %d dropped (retention)",
            len(report["created"]),
            len(report["dropped"]),
        )
    return report


async def status(conn: Conn) -> dict[str, Any]:
    """What ``hub db status`` prints: the layout and, per time-series table, size, rows (estimate),
    partitions or chunks (compressed ones) and the oldest day kept."""
    current = await current_layout(conn)
    tables = []
    for table in TS_TABLES:
        row: dict[str, Any] = {"table": table.name}
        if current == "timescaledb":
            cur = await conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE is_compressed), min(range_start) FROM "
                "timescaledb_information.chunks WHERE hypertable_name = %s "
                "AND hypertable_schema = current_schema()",
                (table.name,),
            )
            chunks, compressed, oldest = await cur.fetchone() or (0, 0, None)
            size = await _one(conn, "SELECT hypertable_size(%s::regclass)", (table.name,))
            row |= {"parts": int(chunks), "compressed": int(compressed), "oldest": oldest}
        else:
            parts = await partitions(conn, table.name) if current == "partitioned" else []
            size = await _one(
                conn,
                "SELECT COALESCE(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s::regclass)",
                (table.name,),
            )
            row |= {"parts": len(parts), "compressed": 0, "oldest": parts[0][1] if parts else None}
        rows = await _one(
            conn,
            "SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::bigint FROM pg_class c WHERE c.oid IN "
            "(SELECT relid FROM pg_partition_tree(%s::regclass)) OR c.oid = %s::regclass",
            (table.name, table.name),
        )
        row |= {"bytes": int(size or 0), "rows_estimate": int(rows or 0)}
        tables.append(row)
    return {"layout": current or "plain", "tables": tables}


async def run_maintenance(pool: Any, retention: Mapping[str, int], every_s: float = 3600.0) -> None:
    """The hub's hourly storage job (partitioned layout; TimescaleDB runs its own policies)."""
    import asyncio

    while True:
        try:
            async with pool.connection() as conn:
                await maintain(conn, retention=retention)
        except psycopg.Error as exc:
            log.warning("storage maintenance failed (%s); next try in %.0f s", exc, every_s)
        await asyncio.sleep(every_s)
