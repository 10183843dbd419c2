"""Versioned SQL migrations: ``hub/migrations/NNN_name.sql`` applied in order, once.

Each file runs in its own transaction and is recorded in ``schema_migrations``. A
session advisory lock (per schema) makes concurrent hubs apply each file exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from hub.errors import StorageError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
LOCK_CLASS = 0x5A1  # first key of the two-key advisory lock; second = hash of the schema
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise StorageError(f"migration file {path.name!r} must be named NNN_lowercase_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StorageError(f"duplicate migration versions in {directory}: {versions}")
    return found


async def apply_migrations(conn: psycopg.AsyncConnection[object], migrations: list[Migration]) -> list[int]:
    """Apply pending migrations on an autocommit connection; returns the versions applied now.

    The caller holds the advisory lock (see :func:`migration_lock`).
    """
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
        "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
    rows: list[tuple[int, str]] = await cur.fetchall()  # type: ignore[assignment]
    done = {int(v): str(c) for v, c in rows}
    applied: list[int] = []
    for mig in migrations:
        if mig.version in done:
            if done[mig.version] != mig.checksum:
                log.warning("migration %03d_%s changed after it was applied (checksum %s, now %s)",
                            mig.version, mig.name, done[mig.version], mig.checksum)
            continue
        log.info("applying migration %03d_%s", mig.version, mig.name)
        try:
            async with conn.transaction():
                await conn.execute(mig.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (mig.version, mig.name, mig.checksum),
                )
        except psycopg.Error as exc:
            raise StorageError(f"migration {mig.version:03d}_{mig.name} failed: {exc}") from exc
        applied.append(mig.version)
    return applied


async def lock(conn: psycopg.AsyncConnection[object]) -> None:
    await conn.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema()))", (LOCK_CLASS,))


async def unlock(conn: psycopg.AsyncConnection[object]) -> None:
    await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (LOCK_CLASS,))
