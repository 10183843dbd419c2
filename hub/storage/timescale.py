"""TimescaleDB when available: ``events`` and ``rule_hits`` become hypertables.

Without the extension the same tables stay plain PostgreSQL with BRIN indexes on time
(created by migration 001). Retention and compression policies belong to a later issue.
"""

from __future__ import annotations

import logging

import psycopg

log = logging.getLogger(__name__)

HYPERTABLES = (("events", "at"), ("rule_hits", "at"))


async def has_timescale(conn: psycopg.AsyncConnection[object]) -> bool:
    cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    return await cur.fetchone() is not None


async def enable_timescale(conn: psycopg.AsyncConnection[object]) -> bool:
    """Try ``CREATE EXTENSION timescaledb`` and convert the time-series tables.

    Returns True when the tables are hypertables. Any failure (extension not installed,
    not preloaded, no privilege) leaves plain tables and returns False.
    """
    try:
        if not await has_timescale(conn):
            async with conn.transaction():
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        for table, column in HYPERTABLES:
            async with conn.transaction():
                await conn.execute(
                    "SELECT create_hypertable(%s::regclass, %s::name, if_not_exists => TRUE, "
                    "migrate_data => TRUE)",
                    (table, column),
                )
    except psycopg.Error as exc:
        log.info("TimescaleDB not available (%s); using plain PostgreSQL tables with BRIN time indexes",
                 str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return False
    log.info("TimescaleDB enabled: %s are hypertables", ", ".join(t for t, _ in HYPERTABLES))
    return True
