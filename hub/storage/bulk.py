"""Binary COPY of a batch of rows into one table, by the fast path or the idempotent (safe) path.

- fast: ``COPY table (cols) FROM STDIN (FORMAT BINARY)`` in one transaction;
- safe: COPY into a TEMP staging table of the same columns (``ON COMMIT DELETE ROWS``, created once
  per connection), then ``INSERT INTO table SELECT ... ON CONFLICT (key) DO NOTHING`` in the same
  transaction: re-sending rows that are already there (or twice in one batch) is a no-op.

:meth:`TableCopy.write_batch` tries the fast path first (unless an earlier try may have committed);
when it is refused (a duplicate, or a bad row) it takes the safe path, bisecting the batch around
rows the encoder or the server refuses: those are rejected alone and logged by their key, never by
their content. :class:`Unavailable` (no connection, connection lost, server shutting down,
timeouts) leaves ``batch.start`` at the first row not yet written; any other :class:`psycopg.Error`
is about the table itself (schema, rights) and is raised as is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool

from hub.metrics import Metrics

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
_YIELD_ROWS = 1024  # encoding a batch gives the event loop a turn every this many rows
# psycopg's binary int2/int4 dumpers wrap out-of-range ints silently (2**31 -> -2**31): check first.
_INT_BOUNDS = {"int2": 2**15, "smallint": 2**15, "int4": 2**31, "int": 2**31, "integer": 2**31}
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, psycopg.DataError,
                  psycopg.ProgrammingError)


def _c_encoder() -> Callable[[Any, int], Any] | None:
    """CPython's C JSON encoder, built once: ``json.dumps`` builds one per call, which costs about 1 µs,
    a third of the encoding time of an event row. None where it is missing or behaves differently."""
    try:
        encode: Callable[[Any, int], Any] = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ":", ",", False, False,
            True)
        sample = {"a": [1, 2.5, None, True, "门\"\n"], "b": {"c": {}}}
        if json.loads("".join(encode(sample, 0))) == sample:
            return encode
    except Exception:
        log.debug("no reusable C JSON encoder; using json.dumps", exc_info=True)
    return None


_C_ENCODE = _c_encoder()


def _c_dumps(obj: Any) -> str:  # a plain function (no closure): psycopg caches the dumper made for it
    return "".join(_C_ENCODE(obj, 0))  # type: ignore[misc]


json_dumps: Callable[[Any], str] = _c_dumps if _C_ENCODE is not None else json.dumps


@dataclass(frozen=True)
class TableSpec:
    name: str  # target table, optionally schema-qualified ("s.events")
    columns: tuple[str, ...]
    types: tuple[str, ...]  # PostgreSQL type names for binary COPY, e.g. ("text", "timestamptz", "jsonb")
    conflict: tuple[str, ...]  # the unique key that makes re-inserts no-ops, e.g. ("id", "at")

    def __post_init__(self) -> None:
        if not self.columns or len(self.columns) != len(self.types):
            raise ValueError(f"{self.name}: columns and types must be non-empty and of equal length")
        if not set(self.conflict) <= set(self.columns):
            raise ValueError(f"{self.name}: conflict columns {self.conflict} must be among the columns")

    def key(self, row: Row) -> dict[str, Any]:
        """The conflict-key values of ``row`` (what may be logged about a row; never its content)."""
        if len(row) != len(self.columns):
            return {}
        return {c: row[self.columns.index(c)] for c in self.conflict}


@dataclass(eq=False)
class Batch:
    rows: list[Row]
    start: int = 0  # rows before this one are committed or rejected
    unsure: bool = False  # an earlier try may have committed: only the safe path may write it
    replay: bool = False  # rows from the spool (counted as replayed, not written)


class BadRows(Exception):
    """The data was refused. ``index``: the row of the batch the encoder refused, when it was the encoder."""

    def __init__(self, cause: BaseException, index: int | None = None) -> None:
        super().__init__(f"{type(cause).__name__} (SQLSTATE {getattr(cause, 'sqlstate', None)})")
        self.cause, self.index = cause, index


class Unavailable(Exception):
    """The database could not be reached or went away. ``sent``: the batch may have been committed."""

    def __init__(self, cause: BaseException, *, sent: bool) -> None:
        super().__init__(str(cause).strip() or type(cause).__name__)
        self.cause, self.sent = cause, sent


class TableCopy:
    """The statements for one table and the two ways of writing a batch into it."""

    def __init__(self, spec: TableSpec, metrics: Metrics | None = None) -> None:
        self.spec, self._metrics = spec, metrics
        table = sql.Identifier(*spec.name.split("."))
        stage = sql.Identifier("pg_temp", ("_ingest_" + spec.name.replace(".", "_"))[:63])
        cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
        key = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, spec.conflict)))
        self.copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, cols)
        self.copy_stage = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, cols)
        # Only the copied columns, without their NOT NULL constraints: those are checked by the INSERT.
        self.create_stage = sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA"
        ).format(stage, cols, table)
        self.insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT{} DO NOTHING").format(
            table, cols, cols, stage, key if spec.conflict else sql.SQL(""))
        self._ints = [(i, _INT_BOUNDS[t]) for i, t in enumerate(spec.types) if t in _INT_BOUNDS]
        self._staged: weakref.WeakSet[Any] = weakref.WeakSet()  # connections holding the staging table
        self.last_commit_s: float | None = None
        self.written = self.replayed = self.duplicates = self.rejected = 0

    async def write_batch(self, pool: AsyncConnectionPool[Any], batch: Batch, timeout_s: float) -> None:
        """Commit or reject every row of ``batch`` from ``batch.start`` on."""
        if not batch.unsure and batch.start == 0:
            try:
                self._committed(batch, len(batch.rows), await self.write(pool, batch.rows, safe=False,
                                                                         timeout_s=timeout_s))
            except BadRows as exc:  # a duplicate or a bad row: the safe path sorts it out
                log.debug("%s: fast path refused a batch (%s)", self.spec.name, exc)
            else:
                batch.start = len(batch.rows)
                return
        todo = deque([(batch.start, len(batch.rows))])  # contiguous ranges, in order
        while todo:
            lo, hi = todo.popleft()
            try:
                inserted = await self.write(pool, batch.rows[lo:hi], safe=True, timeout_s=timeout_s)
            except BadRows as exc:
                if hi - lo == 1 or exc.index == 0:
                    self._reject(batch, lo, exc)
                    if lo + 1 < hi:
                        todo.appendleft((lo + 1, hi))
                    continue
                # The encoder names the row it refused; the server does not: halve the range.
                mid = lo + exc.index if exc.index is not None else (lo + hi) // 2
                todo.extendleft([(mid, hi), (lo, mid)])
                continue
            self._committed(batch, hi - lo, inserted)
            batch.start = hi

    def _reject(self, batch: Batch, i: int, exc: BadRows) -> None:
        log.error("%s: rejected a row with key %.200r: %s", self.spec.name, self.spec.key(batch.rows[i]), exc)
        self.rejected += 1
        batch.start = i + 1

    def _committed(self, batch: Batch, rows: int, inserted: int) -> None:
        if batch.replay:
            self.replayed += rows
        else:
            self.written += rows
        self.duplicates += rows - inserted
        if self._metrics is not None:
            self._metrics.db_writes.labels(table=self.spec.name).inc(inserted)

    async def write(self, pool: AsyncConnectionPool[Any], rows: list[Row], *, safe: bool,
                    timeout_s: float) -> int:
        """Commit ``rows`` in one transaction; returns the rows inserted (fewer on the safe path when
        some were there already). Raises :class:`BadRows` or :class:`Unavailable`."""
        if self._ints:
            self._check_ints(rows)
        sent = False
        t0 = time.monotonic()
        try:
            async with pool.connection(timeout=timeout_s) as conn:
                sent = True
                if safe and conn not in self._staged:
                    async with conn.transaction():
                        await conn.execute(self.create_stage)
                    self._staged.add(conn)
                try:
                    inserted = await self._copy(conn, rows, safe)
                except psycopg.errors.UndefinedTable:
                    self._staged.discard(conn)  # dropped (DISCARD ALL?): create it again next time
                    raise
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded) as exc:
            raise BadRows(exc) from exc  # the last: a key too big for its index, a jsonb too large...
        except (psycopg.OperationalError, OSError) as exc:
            raise Unavailable(exc, sent=sent) from exc
        self.last_commit_s = time.monotonic() - t0
        return inserted

    def _check_ints(self, rows: list[Row]) -> None:
        for n, row in enumerate(rows):
            try:
                for i, bound in self._ints:
                    if row[i] is not None and not -bound <= row[i] < bound:
                        raise OverflowError(f"column {self.spec.columns[i]} out of range")
            except (TypeError, OverflowError, IndexError) as exc:
                raise BadRows(exc, n) from exc

    async def _copy(self, conn: psycopg.AsyncConnection[Any], rows: list[Row], safe: bool) -> int:
        async with conn.transaction(), conn.cursor() as cur:
            set_json_dumps(json_dumps, cur)  # this cursor only
            async with cur.copy(self.copy_stage if safe else self.copy) as copy:
                copy.set_types(self.spec.types)
                i = 0
                try:
                    for i, row in enumerate(rows):
                        await copy.write_row(row)
                        if i % _YIELD_ROWS == _YIELD_ROWS - 1:
                            await asyncio.sleep(0)  # a big batch must not starve the event loop
                except _ENCODE_ERRORS as exc:
                    raise BadRows(exc, i) from exc
            if not safe:
                return len(rows)
            await cur.execute(self.insert)
            return cur.rowcount
