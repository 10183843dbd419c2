"""Bulk ingest of time-series rows: a bounded queue drained by one writer task with binary COPY.

Producers hand rows to :class:`Ingestor` with ``offer()`` (never waits: False when full, for QoS-0
sources that count a drop) or ``await put()`` (waits while full: back-pressure). At most
``max_rows`` rows are held, the batch being written included. One writer takes up to
``batch_rows`` rows of one table (lingering ``linger_s`` for a batch to fill) and commits them:

- fast path: ``COPY table FROM STDIN (FORMAT BINARY)`` in one transaction;
- safe path (idempotent): COPY into a per-connection TEMP staging table, then ``INSERT ... SELECT
  ... ON CONFLICT (key) DO NOTHING``; for a batch whose earlier try has an unknown outcome
  (connection lost around commit), after a duplicate broke the fast path, and for spool replays;
- bad data (refused by the encoder or the server): the batch is bisected until the bad rows are
  alone; they are rejected and logged by key (never by content), the rest is written.

Database unreachable: with a spool, batches are appended to it (state "degraded") and the database
is probed every ``retry_s``; once it answers the spool is replayed (safe path, in order) before any
newer batch. Without a spool (or with a full one) the batch is retried with backoff while the queue
fills up (state "down"; producers wait or drop). Accepted rows are never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from hub.metrics import Metrics
from hub.storage.bulk import Batch, Row, TableCopy, TableSpec, Unavailable

__all__ = ["Ingestor", "LatencyHistogram", "SpoolLike", "TableSpec"]

log = logging.getLogger(__name__)

_MARK_S = 0.001  # rows of one table enqueued within 1 ms share one enqueue time (latency histogram)


class SpoolLike(Protocol):  # hub.storage.spool.Spool
    def append(self, table: str, rows: Sequence[Row]) -> None: ...  # fsync'd; may raise SpoolFull

    @property
    def pending_rows(self) -> int: ...

    async def replay(self, write: Callable[[str, list[Row]], Awaitable[None]], *,
                     batch_rows: int = 5000) -> int: ...


class LatencyHistogram:
    """Counts in geometric buckets (2^(1/8), about 9 % wide) from 0.1 ms up; quantiles to that precision."""

    BASE, STEP, BUCKETS = 1e-4, 2 ** 0.125, 8 * 28

    def __init__(self) -> None:
        self.counts, self.count, self.max = [0] * (self.BUCKETS + 1), 0, 0.0

    def add(self, seconds: float, n: int = 1) -> None:
        i = 0 if seconds <= self.BASE else math.ceil(math.log(seconds / self.BASE, self.STEP))
        self.counts[min(i, self.BUCKETS)] += n
        self.count += n
        self.max = max(self.max, seconds)

    def quantile(self, q: float) -> float | None:
        seen, target = 0, q * self.count
        for i, n in enumerate(self.counts):
            seen += n
            if n and seen >= target:
                return min(self.BASE * self.STEP ** i, self.max)
        return None  # empty

    def summary(self) -> dict[str, float | int | None]:
        return {"count": self.count, "p50": self.quantile(0.5), "p99": self.quantile(0.99),
                "max": self.max if self.count else None}


class _Mark:
    __slots__ = ("n", "t")

    def __init__(self, t: float) -> None:
        self.t, self.n = t, 1


class _Lane:
    """One table's pending rows (with their enqueue times) and its writer."""

    def __init__(self, spec: TableSpec, metrics: Metrics | None) -> None:
        self.spec = spec
        self.copy = TableCopy(spec, metrics)
        self.rows: list[Row] = []
        self.marks: deque[_Mark] = deque()
        self.last: _Mark | None = None
        self.accepted = self.done = 0

    def take(self, n: int) -> _Batch:
        if len(self.rows) <= n:
            rows, self.rows = self.rows, []
        else:
            rows = self.rows[:n]
            del self.rows[:n]
        marks: list[tuple[float, int]] = []
        need = len(rows)
        while need:
            m = self.marks[0]
            if m.n <= need:
                self.marks.popleft()
                self.last = None if m is self.last else self.last
                marks.append((m.t, m.n))
                need -= m.n
            else:
                m.n -= need
                marks.append((m.t, need))
                need = 0
        return _Batch(rows, lane=self, marks=marks)


@dataclass(eq=False, kw_only=True)
class _Batch(Batch):
    lane: _Lane
    marks: list[tuple[float, int]]
    spooled: bool = False


class Ingestor:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        specs: Iterable[TableSpec],
        *,
        max_rows: int = 200_000,
        batch_rows: int = 10_000,
        linger_s: float = 0.02,
        spool: SpoolLike | None = None,
        metrics: Metrics | None = None,
        retry_s: float = 1.0,
        connect_timeout_s: float = 5.0,
        high_water: float = 0.8,
    ) -> None:
        if max_rows < 1 or batch_rows < 1:
            raise ValueError("max_rows and batch_rows must be at least 1")
        self._pool, self._spool = pool, spool
        self._lanes = {s.name: _Lane(s, metrics) for s in specs}
        self.max_rows, self.batch_rows, self.linger_s = max_rows, batch_rows, linger_s
        self.retry_s, self.connect_timeout_s = retry_s, connect_timeout_s
        self._high_mark, self._low_mark = max(1, int(max_rows * high_water)), max_rows // 2
        self._depth, self._high, self._waiting = 0, False, 0  # depth: accepted, not yet finished
        self._wake, self._full, self._space = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._space.set()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed, self._stopping, self._flushing = False, False, 0
        self._spooling = False  # the database failed: batches go to the spool until it is replayed
        self._holding = False  # a batch is retried in memory: nowhere to put it
        self._next_probe = 0.0
        self.latency = LatencyHistogram()
        self.spooled = self.dropped = self.batches = self._orphans = 0

    # -- producers --------------------------------------------------------------------------------

    def offer(self, table: str, row: Row) -> bool:
        """Accept ``row`` unless the queue is full (then count a drop and return False). Never waits."""
        if self._closed:
            raise RuntimeError("ingestor is closed")
        if self._depth >= self.max_rows:
            self.dropped += 1
            return False
        self._accept(table, row)
        return True

    async def put(self, table: str, row: Row) -> None:
        """Accept ``row``, waiting while the queue is full."""
        while self._depth >= self.max_rows and not self._closed:
            self._waiting += 1
            try:
                await self._space.wait()
            finally:
                self._waiting -= 1
        if self._closed:
            raise RuntimeError("ingestor is closed")
        self._accept(table, row)

    def _accept(self, table: str, row: Row) -> None:
        lane = self._lanes[table]
        lane.rows.append(row)
        now = time.monotonic()
        last = lane.last
        if last is not None and now - last.t < _MARK_S:
            last.n += 1
        else:
            lane.last = last = _Mark(now)
            lane.marks.append(last)
        lane.accepted += 1
        self._depth += 1
        if self._depth >= self._high_mark:
            self._high = True
            if self._depth >= self.max_rows:
                self._space.clear()
        if len(lane.rows) >= self.batch_rows:
            self._full.set()
        self._wake.set()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every row accepted so far is committed, spooled or rejected."""
        task = self._task
        if task is None:
            raise RuntimeError("ingestor is not started")
        targets = [(lane, lane.accepted) for lane in self._lanes.values()]
        self._flushing += 1
        self._full.set()
        try:
            async with asyncio.timeout(timeout_s):
                while any(lane.done < n for lane, n in targets):
                    if task.done():
                        raise RuntimeError("ingest writer is not running")
                    await self._progress.wait()
        finally:
            self._flushing -= 1

    async def close(self, timeout_s: float | None = None) -> None:
        """Write (or spool) everything accepted, then stop. On timeout, log what is left and stop."""
        self._closed = self._stopping = True
        for event in (self._space, self._wake, self._full):
            event.set()
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            log.error("ingest: %d rows still unwritten after %.0f s; stopping anyway", self._depth,
                      timeout_s or 0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def state(self) -> str:
        """ "ok", "degraded" (queue above its high-water mark, producers waiting, or the spool in use)
        or "down" (writer not running, or a batch held in memory while the database fails)."""
        if self._task is None or self._task.done() or self._holding:
            return "down"
        spool_pending = self._spool is not None and self._spool.pending_rows > 0
        if self._high or self._waiting or self._spooling or spool_pending:
            return "degraded"
        return "ok"

    def stats(self) -> dict[str, Any]:
        """Counters since start (rows unless named otherwise); ``latency_s``: enqueue→commit seconds."""
        copies = [lane.copy for lane in self._lanes.values()]
        commits = [c.last_commit_s for c in copies if c.last_commit_s is not None]
        return {"state": self.state, "written": sum(c.written for c in copies),
                "duplicates": sum(c.duplicates for c in copies), "spooled": self.spooled,
                "replayed": sum(c.replayed for c in copies), "dropped": self.dropped,
                "rejected": sum(c.rejected for c in copies) + self._orphans, "batches": self.batches,
                "queue_depth": self._depth, "max_rows": self.max_rows, "waiting_producers": self._waiting,
                "spool_pending": self._spool.pending_rows if self._spool is not None else 0,
                "last_commit_s": max(commits, default=None), "latency_s": self.latency.summary()}

    # -- the writer -------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                if self._spool is not None and (self._spooling or self._spool.pending_rows):
                    await self._replay()
                batch = await self._next_batch()
                if batch is None:
                    if self._stopping and not self._depth:
                        return
                    continue
                await self._deliver(batch)
                self._finish(batch)
        except Exception:
            log.exception("ingest writer crashed with %d rows pending", self._depth)
            raise
        finally:
            self._progress.set()

    async def _next_batch(self) -> _Batch | None:
        """The next batch (oldest table first), after lingering for it to fill; None on a probe timeout."""
        lanes = [lane for lane in self._lanes.values() if lane.rows]
        if not lanes:
            if self._stopping:
                return None
            self._wake.clear()
            idle = None if self._spool is None or not self._spool.pending_rows else self.retry_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle):
                    await self._wake.wait()
            return None
        if not (self._flushing or self._stopping or any(len(x.rows) >= self.batch_rows for x in lanes)):
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.linger_s):
                    await self._full.wait()
            lanes = [lane for lane in self._lanes.values() if lane.rows]
        return min(lanes, key=lambda x: x.marks[0].t).take(self.batch_rows)

    def _finish(self, batch: _Batch) -> None:
        n = len(batch.rows)
        batch.lane.done, self._depth, self.batches = batch.lane.done + n, self._depth - n, self.batches + 1
        if not batch.spooled:
            now = time.monotonic()
            for t, count in batch.marks:
                self.latency.add(now - t, count)
        if self._depth <= self._low_mark:
            self._high = False
        if self._depth < self.max_rows:
            self._space.set()
        self._progress.set()
        self._progress = asyncio.Event()

    async def _deliver(self, batch: _Batch) -> None:
        """Commit, spool or reject every row of ``batch``; retries until one of those happened."""
        lane, delay = batch.lane, min(0.05, self.retry_s)
        while True:
            # Nothing newer may reach the table before the spool is replayed.
            spool_first = self._spool is not None and (self._spooling or self._spool.pending_rows > 0)
            if spool_first and not await self._replay():
                if await self._append_spool(batch):
                    return
            else:
                try:
                    await lane.copy.write_batch(self._pool, batch, self.connect_timeout_s)
                except Unavailable as exc:
                    batch.unsure = batch.unsure or exc.sent
                    if self._spool is not None:
                        log.warning("database unavailable (%s); spooling %s rows", exc, lane.spec.name)
                        self._spooling, self._next_probe = True, time.monotonic() + self.retry_s
                        continue
                    log.log(logging.DEBUG if self._holding else logging.WARNING,
                            "database unavailable (%s); keeping %d %s rows, retrying", exc,
                            len(batch.rows) - batch.start, lane.spec.name)
                except psycopg.Error as exc:  # about the table, not a row nor the connection: schema...
                    log.log(logging.DEBUG if self._holding else logging.ERROR, "writing %s failed (%s: %s); "
                            "keeping %d rows, retrying", lane.spec.name, type(exc).__name__, exc.sqlstate,
                            len(batch.rows) - batch.start)
                else:
                    if self._holding:
                        log.info("database answers again: %s rows written", lane.spec.name)
                    self._holding = False
                    return
            self._holding = True  # nowhere to put the batch: keep it, the queue fills up
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_s)

    async def _append_spool(self, batch: _Batch) -> bool:
        assert self._spool is not None
        rows, table = batch.rows[batch.start:], batch.lane.spec.name
        try:
            await asyncio.to_thread(self._spool.append, table, rows)
        except Exception as exc:  # SpoolFull, a disk error: keep the rows in memory instead
            log.log(logging.DEBUG if self._holding else logging.ERROR, "spool refused %d %s rows (%s: %s); "
                    "keeping them in memory", len(rows), table, type(exc).__name__, exc)
            return False
        self.spooled += len(rows)
        batch.start, batch.spooled, self._holding = len(batch.rows), True, False
        return True

    async def _replay(self) -> bool:
        """True when the spool is empty and the database answers; probes at most every ``retry_s``."""
        assert self._spool is not None
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + self.retry_s
        try:
            async with self._pool.connection(timeout=self.connect_timeout_s) as conn:
                await conn.execute("SELECT 1")
            done = await self._spool.replay(self._write_replayed, batch_rows=self.batch_rows)
        except Exception as exc:  # unreachable again, or a spool failure: try again later
            quiet = isinstance(exc, Unavailable | psycopg.OperationalError | OSError)
            log.log(logging.DEBUG if quiet else logging.ERROR, "spool replay interrupted (%s: %s); retrying "
                    "in %.1f s", type(exc).__name__, exc, self.retry_s)
            return False
        if done or self._spooling:
            log.info("database answers again: replayed %d spooled rows", done)
        self._spooling = False
        return True

    async def _write_replayed(self, table: str, rows: list[Row]) -> None:
        lane = self._lanes.get(table)
        if lane is None:
            log.error("spool holds %d rows for table %s, which has no TableSpec: rejected", len(rows), table)
            self._orphans += len(rows)
            return
        await lane.copy.write_batch(self._pool, Batch(rows, unsure=True, replay=True), self.connect_timeout_s)
