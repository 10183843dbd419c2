"""``hub db status | upgrade | maintain``: the hub's database from the command line.

The database is the config's ``database.url`` (or ``HUB_DATABASE_URL``); without one, the embedded
PostgreSQL under the state dir is started for the command (the hub must not be running on it).
``upgrade`` applies the migrations and lays out the time-series tables (TimescaleDB hypertables or
range partitions); ``status`` prints what is there; ``maintain`` runs the hourly job now (partitions
ahead, retention, rollup refresh).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hub.config import HubConfig


def add_commands(sub: Any) -> None:
    db = sub.add_parser("db", help="database: status, upgrade (migrations + layout), maintain")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    for name, text in (("status", "migrations, layout and per-table size, rows, partitions/chunks"),
                       ("upgrade", "apply pending migrations and lay out the time-series tables"),
                       ("maintain", "make partitions ahead, apply retention, refresh rollups (hourly job)")):
        cmd = db_sub.add_parser(name, help=text)
        cmd.add_argument("-c", "--config", required=True, type=Path, help="YAML config file")


@contextlib.asynccontextmanager
async def _database(cfg: HubConfig, *, migrate: bool) -> AsyncIterator[Any]:
    from hub.storage import Database

    async with contextlib.AsyncExitStack() as stack:
        url = cfg.database.url
        if not url:
            from hub.embedded_pg import EmbeddedPostgres

            state_dir = cfg.hub.state_dir.resolve()
            state_dir.mkdir(parents=True, exist_ok=True)
            url = await stack.enter_async_context(EmbeddedPostgres(state_dir))
        db = await stack.enter_async_context(Database(
            url, pool_size=2, timescaledb=cfg.database.timescaledb, migrate=migrate,
            retention=cfg.database.retention_days, compress_after_days=cfg.database.compress_after_days))
        yield db


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


async def _status(cfg: HubConfig) -> int:
    from hub.storage import layout, migrations

    async with _database(cfg, migrate=False) as db, db.pool.connection() as conn:
        known = migrations.load_migrations()
        cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        has_table = bool((await cur.fetchone() or (False,))[0])
        applied: set[int] = set()
        if has_table:
            cur = await conn.execute("SELECT version FROM schema_migrations")
            applied = {int(r[0]) for r in await cur.fetchall()}
        pending = [f"{m.version:03d}_{m.name}" for m in known if m.version not in applied]
        print(f"migrations: {len(applied)} applied, {len(pending)} pending {' '.join(pending)}".rstrip())
        if pending:
            print("run `hub db upgrade` (the hub also does it at start)")
            return 1
        info = await layout.status(conn)
    print(f"layout: {info['layout']}")
    print(f"{'table':<16} {'size':>10} {'rows (est.)':>12} {'parts':>6} {'compressed':>10}  oldest")
    for t in info["tables"]:
        oldest = t["oldest"].date().isoformat() if t["oldest"] is not None else "-"
        print(f"{t['table']:<16} {_size(t['bytes']):>10} {t['rows_estimate']:>12} {t['parts']:>6} "
              f"{t['compressed']:>10}  {oldest}")
    return 0


async def _upgrade(cfg: HubConfig) -> int:
    async with _database(cfg, migrate=True) as db:
        print(f"database up to date; layout: {db.layout}")
    return 0


async def _maintain(cfg: HubConfig) -> int:
    from hub.storage import layout

    async with _database(cfg, migrate=True) as db, db.pool.connection() as conn:
        report = await layout.maintain(conn, retention=cfg.database.retention_days)
    print(f"partitions created: {len(report['created'])}, dropped: {len(report['dropped'])}, "
          f"rollups refreshed: {', '.join(report['refreshed']) or '-'}")
    return 0


def run(args: argparse.Namespace, cfg: HubConfig) -> int:
    job = {"status": _status, "upgrade": _upgrade, "maintain": _maintain}[args.db_command]
    return asyncio.run(job(cfg))
