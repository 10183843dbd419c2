"""Bounded, batching write queue for high-volume rows (events, rule hits, alerts).

Producers ``await put(sql, params)`` (back-pressure when the queue is full). One task
drains up to ``batch_size`` rows at a time, groups them by statement and writes each
group with ``executemany`` inside one transaction. A failed batch is retried with
backoff; after the last try it is logged as an error with its row count (never silently
dropped). ``flush()`` waits until everything queued so far is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, LiteralString

import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

_STOP = object()
Row = tuple[LiteralString, tuple[Any, ...], str]  # (sql, params, table)


class WriteQueue:
    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        *,
        maxsize: int = 10_000,
        batch_size: int = 500,
        retries: int = 3,
        retry_delay_s: float = 0.2,
        on_written: Callable[[str, int], None] | None = None,
    ) -> None:
        self._pool = pool
        self._queue: asyncio.Queue[Row | object] = asyncio.Queue(maxsize)
        self.batch_size = batch_size
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self._on_written = on_written
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failed = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="db-write-queue")

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def put(self, sql: LiteralString, params: tuple[Any, ...], table: str) -> None:
        if self._task is None or self._task.done():
            raise RuntimeError("write queue is not running")
        await self._queue.put((sql, params, table))

    async def flush(self) -> None:
        """Wait until every row queued before this call is written (or given up)."""
        await self._queue.join()

    async def close(self, wait_s: float = 15.0) -> None:
        """Drain pending writes, then stop the writer task."""
        if self._task is None:
            return
        task, self._task = self._task, None
        if not task.done():
            await self._queue.put(_STOP)
            try:
                await asyncio.wait_for(asyncio.shield(task), wait_s)
            except TimeoutError:
                log.error("database write queue: %d rows still pending after %.0f s; giving up",
                          self._queue.qsize(), wait_s)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            items = [first]
            while len(items) < self.batch_size and not self._queue.empty():
                items.append(self._queue.get_nowait())
            rows = [i for i in items if i is not _STOP]
            stop = len(rows) != len(items)
            try:
                if rows:
                    await self._write(rows)  # type: ignore[arg-type]
            finally:
                for _ in items:
                    self._queue.task_done()

    async def _write(self, rows: list[Row]) -> None:
        groups: dict[LiteralString, list[tuple[Any, ...]]] = {}
        tables: dict[LiteralString, str] = {}
        for sql, params, table in rows:
            groups.setdefault(sql, []).append(params)
            tables[sql] = table
        for attempt in range(1, self.retries + 1):
            try:
                async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                    for sql, params_seq in groups.items():
                        await cur.executemany(sql, params_seq)
            except (psycopg.Error, OSError) as exc:
                if attempt == self.retries:
                    self.failed += len(rows)
                    log.error("database write of %d rows failed after %d tries, rows lost: %s",
                              len(rows), attempt, exc)
                    return
                log.warning("database write of %d rows failed (try %d/%d), retrying: %s",
                            len(rows), attempt, self.retries, exc)
                await asyncio.sleep(self.retry_delay_s * 2 ** (attempt - 1))
                continue
            self.written += len(rows)
            if self._on_written is not None:
                for sql, params_seq in groups.items():
                    self._on_written(tables[sql], len(params_seq))
            return
