"""Storage writer benchmark: event rows into the local PostgreSQL, each way measured in the same run.

    .venv/bin/python -m benchmarks.ingest_writer                  # 1,000,000 rows, ~1 min
    .venv/bin/python -m benchmarks.ingest_writer --rows 100000    # quick look
    .venv/bin/python -m benchmarks.ingest_writer --explore        # + where the time goes (~1.5 min more)
    .venv/bin/python -m benchmarks.ingest_writer --profile        # cProfile of run d only

The same N event rows (a time-ordered hub id, ``at``, 5,000 devices, 6 kinds, 50 grids, a small
``data`` dict) go into a freshly created ``events`` table (DDL read from migration 001: primary key
(id, at), BRIN on at, btree (source_id, at DESC)) in a schema of its own, after a CHECKPOINT:

a. baseline: ``executemany`` of ``INSERT ... ON CONFLICT DO NOTHING``, 500 rows per transaction
   (what :class:`hub.storage.writer.WriteQueue` does);
b. binary COPY straight into the table, 10,000 rows per transaction (the Ingestor's fast path);
c. binary COPY into a TEMP staging table + ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (safe path);
d. the whole :class:`hub.storage.ingest.Ingestor`, rows handed over with ``await put()`` from the loop
   as fast as it takes them (the queue stays full, so enqueue→commit is mostly queueing);
e. the same, paced at ``--paced-rate`` rows/s (default: half of d's rate): enqueue→commit latency
   of an ingestor that keeps up.

Client CPU is this process's, server CPU the benchmark's own backends' (from /proc); the input rows
are made before timing and frozen out of the garbage collector's sight (``gc.freeze``). ``--explore``
splits the time: Python encoding alone (psycopg's COPY formatter into a null writer; jsonb by
psycopg's default ``json.dumps`` or the writer's reused C encoder), the server alone (COPY of
pre-encoded bytes) for variants of the table, batch sizes, two connections. ``--profile`` prints
where the Python time of run d goes (cProfile, top functions).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import io
import json
import pstats
import random
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import AsyncCopy, AsyncWriter
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg_pool import AsyncConnectionPool

from benchmarks.measure import load_average, machine_description, pid_cpu_s, process_cpu_s
from hub.storage.bulk import TableCopy, json_dumps
from hub.storage.ingest import Ingestor, TableSpec
from hub.storage.rows import EVENT_SQL

Row = tuple[Any, ...]
BASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
APP = "ingest-bench"
MIGRATION = Path(__file__).resolve().parents[1] / "hub" / "migrations" / "001_initial.sql"
EVENTS = TableSpec("events", ("id", "at", "source_id", "kind", "grid", "data"),
                   ("text", "timestamptz", "text", "text", "text", "jsonb"), ("id", "at"))
KINDS = ("door_opened", "door_closed", "lock_unlocked", "lock_locked", "low_battery", "tamper")
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def event_rows(n: int, seed: int = 7) -> list[Row]:
    """``n`` event rows about 50 µs apart, ids like :func:`hub.events.new_id` (ms prefix + random)."""
    rnd = random.Random(seed)
    devices = [f"door-{i:05d}" for i in range(5000)]
    grids = [f"4401050010{i:02d}" for i in range(50)]
    rows = []
    for i in range(n):
        at = T0 + timedelta(microseconds=50 * i)
        ms = int(at.timestamp() * 1000)
        dev = rnd.randrange(5000)
        rows.append((f"{ms:012x}{rnd.getrandbits(80):020x}", at, devices[dev], KINDS[rnd.randrange(6)],
                     grids[dev % 50], {"contact": rnd.random() < 0.5, "battery": rnd.randint(5, 100),
                                       "linkquality": rnd.randint(0, 255)}))
    return rows


def events_ddl() -> list[str]:
    """The events table's statements from migration 001."""
    stmts = [s.strip() for s in re.sub(r"--[^\n]*", "", MIGRATION.read_text()).split(";")]
    return [s for s in stmts if re.search(r"(TABLE IF NOT EXISTS|ON) events\b", s)]


@dataclass
class Variant:
    """How the events table is created for a run (the migration's DDL, rewritten)."""

    name: str
    edit: Callable[[list[str]], list[str]] = lambda ddl: ddl


VARIANTS = {
    "as migrated": Variant("as migrated"),
    "no (source_id, at) index": Variant("no (source_id, at) index",
                                        lambda d: [s for s in d if "events_source_at" not in s]),
    "no index at all": Variant("no index at all", lambda d: [
        s.replace(",\n    PRIMARY KEY (id, at)", "") for s in d if "CREATE INDEX" not in s]),
    'text COLLATE "C"': Variant('text COLLATE "C"', lambda d: [
        re.sub(r"\b(id|source_id)(\s+)text", r'\1\2text COLLATE "C"', s) for s in d]),
    "data text, not jsonb": Variant("data text, not jsonb (the jsonb bytes stored as text)", lambda d: [
        s.replace("jsonb       NOT NULL DEFAULT '{}'::jsonb", "text NOT NULL") for s in d]),
}


class Bench:
    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.schema = f"bench_ingest_{secrets.token_hex(3)}"
        self.url = f"{BASE_URL}?options=-csearch_path%3D{self.schema}&application_name={APP}"

    async def reset(self, variant: Variant = VARIANTS["as migrated"]) -> None:
        schema = sql.Identifier(self.schema)
        async with await psycopg.AsyncConnection.connect(BASE_URL, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
            await conn.execute(sql.SQL("SET search_path = {}").format(schema))
            for stmt in variant.edit(events_ddl()):
                await conn.execute(stmt.encode())
            await conn.execute("CHECKPOINT")

    async def drop(self) -> None:
        async with await psycopg.AsyncConnection.connect(BASE_URL, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema)))

    async def timed(self, conns: int, work: Callable[[AsyncConnectionPool[Any]], Awaitable[dict[str, Any]]],
                    variant: Variant = VARIANTS["as migrated"]) -> dict[str, Any]:
        """Run ``work`` on a fresh table with a pool of ``conns`` connections; rows/s and CPU per row."""
        await self.reset(variant)
        async with AsyncConnectionPool(self.url, min_size=conns, max_size=conns, open=False,
                                       kwargs={"autocommit": True}) as pool:
            await pool.open(wait=True)
            held = [await pool.getconn() for _ in range(conns)]  # all at once: each its own backend
            backends = [c.info.backend_pid for c in held]
            for c in held:
                await pool.putconn(c)
            server0, client0, t0 = self._server_cpu(backends), process_cpu_s(), time.perf_counter()
            extra = await work(pool)
            wall = time.perf_counter() - t0
            client, server = process_cpu_s() - client0, self._server_cpu(backends) - server0
        n = extra.pop("rows", len(self.rows))
        return {"rows": n, "s": wall, "rate": n / wall, "client_us": client / n * 1e6,
                "server_us": server / n * 1e6, **extra}

    @staticmethod
    def _server_cpu(pids: list[int]) -> float:
        return sum(pid_cpu_s(p) or 0.0 for p in pids)


def chunks(rows: list[Row], n: int) -> list[list[Row]]:
    return [rows[i:i + n] for i in range(0, len(rows), n)]


async def executemany(pool: AsyncConnectionPool[Any], rows: list[Row], batch: int = 500) -> dict[str, Any]:
    for part in chunks(rows, batch):
        params = [(r[0], r[1], r[2], r[3], r[4], Jsonb(r[5])) for r in part]
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(EVENT_SQL, params)
    return {}


async def copy_path(pool: AsyncConnectionPool[Any], rows: list[Row], *, safe: bool, batch: int = 10_000,
                    parallel: int = 1) -> dict[str, Any]:
    writer = TableCopy(EVENTS)
    parts = chunks(rows, batch)

    async def worker() -> None:
        while parts:
            await writer.write(pool, parts.pop(0), safe=safe, timeout_s=30)

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return {}


async def ingestor(pool: AsyncConnectionPool[Any], rows: list[Row],
                   rate: float | None = None) -> dict[str, Any]:
    ing = Ingestor(pool, [EVENTS])
    ing.start()
    if rate is None:
        for row in rows:
            await ing.put("events", row)
    else:  # 1 ms ticks, catching up when late
        t0, step = time.monotonic(), max(1, int(rate / 1000))
        for i in range(0, len(rows), step):
            for row in rows[i:i + step]:
                await ing.put("events", row)
            await asyncio.sleep(max(0.0, t0 + (i + step) / rate - time.monotonic()))
    await ing.flush()
    await ing.close()
    lat = ing.stats()["latency_s"]
    return {"p50_ms": lat["p50"] * 1000, "p99_ms": lat["p99"] * 1000, "rows": len(rows)}


class _Collect(AsyncWriter):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def write(self, data: Any) -> None:
        self.chunks.append(bytes(data))


async def encode_only(rows: list[Row], *, binary: bool = True, columns: int = 6,
                      dumps: Callable[[Any], str] = json_dumps) -> tuple[float, list[bytes]]:
    """CPU seconds psycopg takes to format ``rows`` for COPY (no server involved), and the bytes."""
    async with await psycopg.AsyncConnection.connect(BASE_URL) as conn:
        set_json_dumps(dumps, conn)
        out = _Collect()
        t0 = time.process_time()
        async with AsyncCopy(conn.cursor(), binary=binary, writer=out) as copy:
            copy.set_types(list(EVENTS.types[:columns]))
            for row in rows:
                await copy.write_row(row[:columns] if columns < 6 else row)
        return time.process_time() - t0, out.chunks


async def server_only(pool: AsyncConnectionPool[Any], data: list[list[bytes]]) -> dict[str, Any]:
    """COPY already encoded batches (one list of binary chunks each), as many at once as the pool has."""
    todo = list(data)

    async def worker() -> None:
        while todo:
            part = todo.pop(0)
            async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur, \
                    cur.copy(TableCopy(EVENTS).copy) as copy:
                for chunk in part:
                    await copy.write(chunk)

    await asyncio.gather(*(worker() for _ in range(pool.max_size)))
    return {}


async def run(args: argparse.Namespace) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, str]]]:
    rows = event_rows(args.rows)
    gc.collect()
    gc.freeze()  # the input is the benchmark's, not the writer's: keep it out of every collection
    bench = Bench(rows)
    main: list[tuple[str, dict[str, Any]]] = []
    explore: list[tuple[str, str]] = []
    try:
        main.append(("a. executemany INSERT ON CONFLICT, 500/tx (WriteQueue)",
                     await bench.timed(1, lambda p: executemany(p, rows))))
        main.append(("b. COPY binary into the table, 10k/tx (fast path)",
                     await bench.timed(1, lambda p: copy_path(p, rows, safe=False))))
        main.append(("c. COPY binary → staging → INSERT ON CONFLICT, 10k/tx (safe path)",
                     await bench.timed(1, lambda p: copy_path(p, rows, safe=True))))
        main.append(("d. Ingestor.put(), producer as fast as it takes rows",
                     await bench.timed(1, lambda p: ingestor(p, rows))))
        rate = args.paced_rate or round(main[-1][1]["rate"] / 2, -3)
        paced = rows[:min(len(rows), int(rate * 5))]
        main.append((f"e. Ingestor.put(), paced at {rate:,.0f} rows/s",
                     await bench.timed(1, lambda p: ingestor(p, paced, rate))))
        if args.explore:
            explore = await run_explore(bench, rows)
    finally:
        await bench.drop()
    return main, explore


async def run_explore(bench: Bench, rows: list[Row]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    n = len(rows)
    for label, binary, columns, dumps in (
            ("binary, jsonb by psycopg's default json.dumps", True, 6, json.dumps),
            ("binary, jsonb by the writer's reused C encoder (TableCopy)", True, 6, json_dumps),
            ("text, jsonb by the writer's encoder", False, 6, json_dumps),
            ("binary, without the jsonb column", True, 5, json_dumps)):
        cpu, _ = await encode_only(rows, binary=binary, columns=columns, dumps=dumps)
        out.append((f"Python: psycopg COPY encoding only, {label}",
                    f"{n / cpu:,.0f} rows/s ({cpu / n * 1e6:.2f} µs/row CPU)"))
    batches = [(await encode_only(part))[1] for part in chunks(rows, 10_000)]
    for variant in VARIANTS.values():
        r = await bench.timed(1, lambda p: server_only(p, batches), variant)
        out.append((f"server only (pre-encoded COPY), {variant.name}", _rate(r)))
    r = await bench.timed(2, lambda p: server_only(p, batches))
    out.append(("server only, as migrated, 2 connections in parallel", _rate(r)))
    for batch in (1_000, 50_000):
        r = await bench.timed(1, functools.partial(copy_path, rows=rows, safe=False, batch=batch))
        out.append((f"fast path, {batch:,} rows/tx", _rate(r)))
    r = await bench.timed(2, lambda p: copy_path(p, rows, safe=False, parallel=2))
    out.append(("fast path, 2 connections in parallel (encoding on one loop)", _rate(r)))
    no_source = VARIANTS["no (source_id, at) index"]
    r = await bench.timed(1, lambda p: copy_path(p, rows, safe=False), no_source)
    out.append(("fast path, table without the (source_id, at) index", _rate(r)))
    r = await bench.timed(1, lambda p: ingestor(p, rows), no_source)
    out.append(("Ingestor.put(), table without the (source_id, at) index", _rate(r)))
    return out


async def profile(rows: list[Row]) -> str:
    """cProfile of run d on ``rows``: the functions with the most own time."""
    bench = Bench(rows)
    prof = cProfile.Profile()
    try:
        async def work(pool: AsyncConnectionPool[Any]) -> dict[str, Any]:
            prof.enable()
            try:
                return await ingestor(pool, rows)
            finally:
                prof.disable()

        await bench.timed(1, work)
    finally:
        await bench.drop()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
    return out.getvalue()


def _rate(r: dict[str, Any]) -> str:
    return (f"{r['rate']:,.0f} rows/s (CPU µs/row: client {r['client_us']:.2f}, "
            f"server {r['server_us']:.2f})")


def render(main: list[tuple[str, dict[str, Any]]], explore: list[tuple[str, str]], command: str) -> str:
    base = main[0][1]["rate"]
    lines = [f"`{command}` — {machine_description()}; load average before the run "
             f"{' / '.join(f'{x:.2f}' for x in LOAD)}", "",
             "| path | rows | s | rows/s | × baseline | client CPU µs/row | server CPU µs/row | "
             "enqueue→commit p50 / p99 ms |", "|---|---|---|---|---|---|---|---|"]
    for name, r in main:
        lat = f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}" if "p50_ms" in r else "–"
        lines.append(f"| {name} | {r['rows']:,} | {r['s']:.1f} | {r['rate']:,.0f} | {r['rate'] / base:.1f} | "
                     f"{r['client_us']:.2f} | {r['server_us']:.2f} | {lat} |")
    if explore:
        lines += ["", "| where the time goes | result |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in explore]
    return "\n".join(lines)


LOAD = load_average()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ingest_writer",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="Event rows per run (default 1,000,000).")
    p.add_argument("--paced-rate", type=float, help="Rows/s of run e (default: half of run d's rate).")
    p.add_argument("--explore", action="store_true", help="Also split encoding vs server time, try variants.")
    p.add_argument("--profile", action="store_true", help="Only profile run d (cProfile) on up to 300k rows.")
    raw = sys.argv[1:] if argv is None else argv
    args = p.parse_args(raw)
    if args.profile:
        print(asyncio.run(profile(event_rows(min(args.rows, 300_000)))))
        return 0
    main_rows, explore = asyncio.run(run(args))
    print(render(main_rows, explore, " ".join([".venv/bin/python -m benchmarks.ingest_writer", *raw])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
