"""The hub's database: a psycopg 3 async pool, migrations, TimescaleDB detection and the
repository API used by the alerts engine and the web app.

``async with Database(url) as db:`` opens the pool, applies migrations (``migrate=True``)
and starts the write queue; leaving the block drains pending writes (also on Ctrl-C).
Events, rule hits and alerts are queued and written in batches; incident writes are
immediate (the API must see what was just published).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from hub.errors import StorageError
from hub.events import RuleHit, SourceEvent
from hub.metrics import Metrics
from hub.redact import redact_url
from hub.storage import incidents, layout, migrations
from hub.storage.rows import ALERT_SQL, EVENT_SQL, RULE_HIT_SQL, event_params, rule_hit_params, ts
from hub.storage.writer import WriteQueue

log = logging.getLogger(__name__)


class Database:
    def __init__(
        self,
        url: str,
        pool_size: int = 4,
        timescaledb: Literal["auto", "off"] = "auto",
        *,
        migrate: bool = True,
        metrics: Metrics | None = None,
        queue_size: int = 10_000,
        batch_size: int = 500,
        open_timeout_s: float = 30.0,
        retention: Mapping[str, int] | None = None,
        compress_after_days: int = 7,
    ) -> None:
        self.url = url
        self.timescaledb = timescaledb
        self.timescale = False
        self.layout: str | None = None  # "timescaledb" | "partitioned" once migrated
        self.retention = dict(retention or {})
        self.compress_after_days = compress_after_days
        self._auto_migrate = migrate
        self._metrics = metrics
        self.open_timeout_s = open_timeout_s
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), open=False, kwargs={"autocommit": True},
            name="hub-db",
        )
        self.writes = WriteQueue(self.pool, maxsize=queue_size, batch_size=batch_size,
                                 on_written=self._count_written)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Database:
        t0 = time.monotonic()
        try:
            await self.pool.open(wait=True, timeout=self.open_timeout_s)
        except psycopg.Error as exc:
            await self.pool.close()
            raise StorageError(f"cannot connect to {redact_url(self.url)}: {exc}") from exc
        try:
            if self._auto_migrate:
                await self.migrate()
        except BaseException:
            await self.pool.close()
            raise
        self.writes.start()
        log.info("database ready at %s in %.2f s (%s)", redact_url(self.url), time.monotonic() - t0,
                 "TimescaleDB hypertables" if self.timescale else "PostgreSQL range partitions")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        pending = self.writes.pending
        if pending:
            log.info("flushing %d pending database writes", pending)
        await self.writes.close()
        await self.pool.close()

    async def flush(self) -> None:
        """Wait until all queued event/rule-hit/alert rows are written."""
        await self.writes.flush()

    async def migrate(self) -> list[int]:
        """Apply pending SQL migrations and (timescaledb="auto") TimescaleDB; returns versions applied."""
        async with self.pool.connection() as conn:
            await migrations.lock(conn)
            try:
                applied = await migrations.apply_migrations(conn, migrations.load_migrations())
                self.layout = await layout.setup(conn, self.timescaledb, retention=self.retention,
                                                 compress_after_days=self.compress_after_days)
                self.timescale = self.layout == "timescaledb"
            finally:
                await migrations.unlock(conn)
        if applied:
            log.info("applied migrations %s", ", ".join(f"{v:03d}" for v in applied))
        return applied

    def _count_written(self, table: str, n: int) -> None:
        if self._metrics is not None:
            self._metrics.db_writes.labels(table=table).inc(n)

    # -- queued, batched writes ----------------------------------------------------------------

    async def insert_event(self, event: SourceEvent) -> None:
        await self.writes.put(EVENT_SQL, event_params(event), "events")

    async def insert_rule_hit(self, hit: RuleHit) -> None:
        await self.writes.put(RULE_HIT_SQL, rule_hit_params(hit), "rule_hits")

    async def insert_alert(
        self,
        *,
        id: str,
        at: float | datetime,
        kind: str,
        source_type: str,
        source_id: str,
        rule: str | None = None,
        zone: str | None = None,
        grid: str | None = None,
        incident_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        params = (id, ts(at), kind, source_type, source_id, rule, zone, grid, incident_id, Jsonb(data or {}))
        await self.writes.put(ALERT_SQL, params, "alerts")

    # -- incidents (written immediately) --------------------------------------------------------

    async def create_incident(
        self,
        *,
        id: str,
        kind: str,
        cls: str = "general",
        grid: str | None = None,
        title: str = "",
        opened_at: float | datetime | None = None,
        sources: Sequence[dict[str, Any]] = (),
        evidence: Sequence[dict[str, Any]] = (),
        count: int = 1,
        last_seen: float | datetime | None = None,
        actor: str = "system",
        note: str = "",
    ) -> dict[str, Any]:
        out = await incidents.create(self.pool, id=id, kind=kind, cls=cls, grid=grid, title=title,
                                     opened_at=opened_at, sources=sources, evidence=evidence, count=count,
                                     last_seen=last_seen, actor=actor, note=note)
        self._count_written("incidents", 1)
        return out

    async def update_incident(self, incident_id: str, **fields: Any) -> dict[str, Any]:
        """Set any of ``cls, state, grid, title, sources, evidence, count, last_seen``."""
        return await incidents.update(self.pool, incident_id, **fields)

    async def add_history(self, incident_id: str, state: str, *, actor: str = "system", note: str = "",
                          action: str | None = None, at: float | datetime | None = None) -> None:
        async with self.pool.connection() as conn:
            await incidents.add_history(conn, incident_id, state, actor=actor, note=note, action=action,
                                        at=at)

    async def list_incidents(
        self,
        state: str | None = None,
        grid: str | Sequence[str] | None = None,
        cls: str | None = None,
        since: float | datetime | str | None = None,
        limit: int = 100,
        *,
        scope: incidents.Scope | None = None,
    ) -> list[dict[str, Any]]:
        return await incidents.list_(self.pool, state=state, grid=grid, cls=cls, since=since, limit=limit,
                                     scope=scope)

    async def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        return await incidents.get(self.pool, incident_id)
