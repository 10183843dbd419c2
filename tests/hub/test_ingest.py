"""hub.storage.ingest against the real local PostgreSQL: binary COPY, duplicates, bad rows, a slow
database (back-pressure), an unreachable database (the real spool, then replay in order)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from hub.metrics import Metrics
from hub.storage.ingest import Ingestor, TableSpec
from hub.storage.spool import Spool
from tests.support import pg

pg_url = pg.pg_url

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
EVENTS_DDL = """
CREATE TABLE events (
    id text NOT NULL, at timestamptz NOT NULL, source_id text NOT NULL, kind text NOT NULL, grid text,
    data jsonb NOT NULL DEFAULT '{}'::jsonb, PRIMARY KEY (id, at));
CREATE INDEX events_source_at ON events (source_id, at DESC)
"""
EVENTS = TableSpec("events", ("id", "at", "source_id", "kind", "grid", "data"),
                   ("text", "timestamptz", "text", "text", "text", "jsonb"), ("id", "at"))
# n: insertion order, filled by the server; seq: the producer's order.
SEQ_DDL = ("CREATE TABLE {t} (n bigserial, seq bigint PRIMARY KEY, at timestamptz NOT NULL, "
           "data jsonb NOT NULL)")


def seq_spec(table: str) -> TableSpec:
    return TableSpec(table, ("seq", "at", "data"), ("int8", "timestamptz", "jsonb"), ("seq",))


def seq_row(i: int) -> tuple[Any, ...]:
    return (i, T0 + timedelta(milliseconds=i), {"i": i})


async def execute(url: str, *statements: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for stmt in statements:
            await conn.execute(stmt.encode())


async def fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(query.encode())
        return await cur.fetchall()


@asynccontextmanager
async def open_pool(url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    # A short reconnect_timeout: the pool gives up a backed-off reconnection soon and connects afresh
    # on the next request, so a test's outage ends within seconds of the database's return.
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(url, min_size=1, max_size=2, open=False,
                                                         kwargs={"autocommit": True}, reconnect_timeout=2.0)
    await pool.open(wait=True, timeout=10)
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def running(ing: Ingestor) -> AsyncIterator[Ingestor]:
    ing.start()
    try:
        yield ing
    finally:
        await ing.close(timeout_s=10)


async def until(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_rows_of_every_type_round_trip(pg_url: str) -> None:
    await execute(pg_url, """CREATE TABLE samples (id text PRIMARY KEY, at timestamptz, day date, n int4,
        big int8, small int2, x float8, r real, ok bool, blob bytea, data jsonb, box float4[], tags text[],
        u uuid, price numeric)""")
    spec = TableSpec("samples", ("id", "at", "day", "n", "big", "small", "x", "r", "ok", "blob", "data",
                                 "box", "tags", "u", "price"),
                     ("text", "timestamptz", "date", "int4", "int8", "int2", "float8", "float4", "bool",
                      "bytea", "jsonb", "float4[]", "text[]", "uuid", "numeric"), ("id",))
    rows: list[tuple[Any, ...]] = [
        (f"s{i}", T0 + timedelta(seconds=i, microseconds=7), date(2026, 3, 1 + i % 28), i, 2**40 + i, -i,
         i / 3, 0.5, i % 2 == 0, bytes([i % 256, 0, 255]), {"i": i, "nested": {"l": [1, "二"]}},
         [1.5, 2.5, float(i)], ["门", f"t{i}"], uuid.UUID(int=i), Decimal("12.34") + i)
        for i in range(2500)]
    rows.append(("nulls", None, None, None, None, None, None, None, None, None, None, None, None, None, None))
    async with open_pool(pg_url) as pool, running(Ingestor(pool, [spec], batch_rows=1000)) as ing:
        for row in rows:
            await ing.put("samples", row)
        await ing.flush(timeout_s=20)
        stats = ing.stats()
    back = await fetch(pg_url, "SELECT * FROM samples ORDER BY id")
    assert sorted(back) == sorted(rows)
    assert stats["written"] == len(rows) and stats["rejected"] == stats["duplicates"] == 0
    assert stats["batches"] >= 3 and stats["queue_depth"] == 0 and stats["state"] == "ok"
    lat = stats["latency_s"]
    assert lat["count"] == len(rows) and 0 < lat["p50"] <= lat["p99"] <= lat["max"] < 20


async def test_duplicates_within_and_across_batches_keep_one_row_each_and_the_rest(pg_url: str) -> None:
    await execute(pg_url, *EVENTS_DDL.split(";"))

    def ev(i: int, kind: str = "door_opened") -> tuple[Any, ...]:
        return (f"ev{i:04d}", T0 + timedelta(seconds=i), f"door-{i % 7}", kind, "G1", {"n": i})

    metrics = Metrics()
    async with open_pool(pg_url) as pool, running(Ingestor(pool, [EVENTS], batch_rows=500,
                                                            metrics=metrics)) as ing:
        first = [ev(i) for i in range(300)] + [ev(5, "door_closed"), ev(299, "door_closed")]
        for row in first:
            await ing.put("events", row)
        await ing.flush()
        # Next batch: re-sent rows (a redelivery) mixed with new ones.
        for row in [ev(i) for i in range(250, 400)]:
            await ing.put("events", row)
        await ing.flush()
        stats = ing.stats()
    back = await fetch(pg_url, "SELECT id, kind FROM events ORDER BY id")
    assert [r[0] for r in back] == [f"ev{i:04d}" for i in range(400)]
    assert {r[1] for r in back} == {"door_opened"}  # the first of two duplicates wins
    assert stats["written"] == 452 and stats["duplicates"] == 52 and stats["rejected"] == 0
    assert metrics.registry.get_sample_value("hub_db_writes_total", {"table": "events"}) == 400  # inserted


async def test_a_bad_row_is_rejected_alone_and_never_logged(pg_url: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    await execute(pg_url, "CREATE TABLE readings (seq int8 PRIMARY KEY, n int4 NOT NULL CHECK (n >= 0), "
                          "note text, data jsonb)", "CREATE INDEX ON readings (note)")
    spec = TableSpec("readings", ("seq", "n", "note", "data"), ("int8", "int4", "text", "jsonb"), ("seq",))
    rows: list[tuple[Any, ...]] = [(i, i, f"note {i}", {"i": i}) for i in range(1000)]
    loop: dict[str, Any] = {"SECRET": "loop"}
    loop["self"] = loop
    rows[137] = (137, "SECRET-not-a-number", "x", {})  # refused by the encoder
    rows[400] = (400, 1, "x", loop)  # refused by the JSON encoder
    rows[640] = (640, -5, "SECRET-check", {})  # refused by the server (CHECK)
    rows[641] = (641, None, "SECRET-null", {})  # refused by the server (NOT NULL)
    rows[700] = (700, 2**31, "x", {})  # out of int4's range (psycopg's binary dumper would wrap it)
    rows[900] = (900, 1, "SECRET" + secrets.token_hex(20_000), {})  # too big for its index (54000)
    caplog.set_level(logging.DEBUG, logger="hub.storage")
    async with open_pool(pg_url) as pool, running(Ingestor(pool, [spec], batch_rows=1000)) as ing:
        for row in rows:
            await ing.put("readings", row)
        await ing.flush(timeout_s=20)
        stats = ing.stats()
    back = await fetch(pg_url, "SELECT seq FROM readings ORDER BY seq")
    assert [r[0] for r in back] == [i for i in range(1000) if i not in (137, 400, 640, 641, 700, 900)]
    assert stats["rejected"] == 6 and stats["written"] == 994
    assert "SECRET" not in caplog.text
    assert caplog.text.count("rejected a row with key {'seq': ") == 6


async def test_a_slow_database_applies_back_pressure(pg_url: str) -> None:
    await execute(pg_url, SEQ_DDL.format(t="slow"))
    spec = seq_spec("slow")
    depths: list[int] = []
    async with open_pool(pg_url) as pool, running(Ingestor(pool, [spec], max_rows=100, batch_rows=25,
                                                            linger_s=0.005)) as ing:
        async def sample() -> None:
            while True:
                depths.append(ing.stats()["queue_depth"])
                await asyncio.sleep(0.001)

        sampler = asyncio.create_task(sample())
        locker = await psycopg.AsyncConnection.connect(pg_url)  # holds the lock until rollback
        await locker.execute("LOCK TABLE slow IN ACCESS EXCLUSIVE MODE")
        t_locked = time.monotonic()
        accepted = refused = 0
        while refused < 50:
            if ing.offer("slow", seq_row(accepted)):
                accepted += 1
            else:
                refused += 1
            await asyncio.sleep(0)
        assert accepted == 100  # the batch stuck in COPY counts too: at most max_rows rows held
        assert ing.state == "degraded"
        blocked = asyncio.create_task(ing.put("slow", seq_row(100)))
        await asyncio.sleep(0.3)
        assert not blocked.done() and ing.stats()["waiting_producers"] == 1
        with pytest.raises(TimeoutError):
            await ing.flush(timeout_s=0.2)
        await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - t_locked)))
        await locker.rollback()
        await asyncio.wait_for(blocked, 5)
        await ing.flush(timeout_s=10)
        assert ing.state == "ok"
        stats = ing.stats()
        sampler.cancel()
        await locker.close()
    assert max(depths) <= 100 and stats["queue_depth"] == 0
    assert stats["dropped"] == refused and stats["written"] == 101
    assert stats["latency_s"]["p99"] >= 1.5  # the rows that waited for the lock
    back = await fetch(pg_url, "SELECT seq FROM slow ORDER BY n")
    assert [r[0] for r in back] == list(range(101))


@pytest.fixture
async def outage_db() -> AsyncIterator[tuple[str, str]]:
    """(URL of a database of our own, its name) that a test may make unreachable and back."""
    name = f"ingest_{secrets.token_hex(4)}"
    await execute(pg.BASE_URL, f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(pg.BASE_URL)._replace(path=f"/{name}"))
    try:
        yield url, name
    finally:
        await execute(pg.BASE_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def cut_off(name: str) -> None:
    await execute(pg.BASE_URL, f"ALTER DATABASE {name} ALLOW_CONNECTIONS false",
                  f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")


async def test_unreachable_database_spools_then_replays_every_row_once_in_order(
        outage_db: tuple[str, str], tmp_path: Path) -> None:
    url, name = outage_db
    await execute(url, SEQ_DDL.format(t="a"), SEQ_DDL.format(t="b"))
    spool = Spool(tmp_path / "spool")
    total = 0

    async def produce(n: int) -> None:
        nonlocal total
        for i in range(total, total + n):
            await ing.put("a", seq_row(i))
            await ing.put("b", seq_row(i))
            if i % 50 == 0:
                await asyncio.sleep(0.005)
        total += n

    try:
        async with open_pool(url) as pool, running(Ingestor(
                pool, [seq_spec("a"), seq_spec("b")], max_rows=2000, batch_rows=100, retry_s=0.2, spool=spool,
                connect_timeout_s=1.0)) as ing:
            await produce(500)
            await ing.flush()
            await cut_off(name)
            await produce(1500)
            await ing.flush(timeout_s=20)  # committed or spooled: nothing waits in memory
            assert ing.state == "degraded"
            assert ing.stats()["spooled"] > 0 and spool.pending_rows > 0
            assert ing.stats()["queue_depth"] == 0
            await execute(pg.BASE_URL, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            await produce(500)  # while the spool is replayed: these must wait for it
            await ing.flush(timeout_s=20)
            await until(lambda: spool.pending_rows == 0 and ing.state == "ok", 20)
            stats = ing.stats()
    finally:
        spool.close()
    assert stats["spooled"] == stats["replayed"] > 0 and stats["rejected"] == stats["dropped"] == 0
    for table in ("a", "b"):
        back = await fetch(url, f"SELECT seq FROM {table} ORDER BY n")
        assert [r[0] for r in back] == list(range(total))  # each row once, in the order produced


async def test_unreachable_database_without_spool_holds_rows_and_retries(outage_db: tuple[str, str]) -> None:
    url, name = outage_db
    await execute(url, SEQ_DDL.format(t="a"))
    async with open_pool(url) as pool, running(Ingestor(pool, [seq_spec("a")], max_rows=300, batch_rows=50,
                                                        retry_s=0.2, connect_timeout_s=1.0)) as ing:
        for i in range(100):
            await ing.put("a", seq_row(i))
        await ing.flush()
        await cut_off(name)
        accepted = 100
        while ing.offer("a", seq_row(accepted)):
            accepted += 1
        assert accepted == 400  # max_rows held in memory, then refused
        await until(lambda: ing.state == "down", 5)
        await execute(pg.BASE_URL, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        await ing.flush(timeout_s=20)
        await until(lambda: ing.state == "ok", 5)
        stats = ing.stats()
    back = await fetch(url, "SELECT seq FROM a ORDER BY n")
    assert [r[0] for r in back] == list(range(400))
    assert stats["dropped"] == 1 and stats["rejected"] == 0


async def test_close_writes_everything_then_refuses_rows(pg_url: str) -> None:
    await execute(pg_url, SEQ_DDL.format(t="c"))
    async with open_pool(pg_url) as pool:
        ing = Ingestor(pool, [seq_spec("c")], linger_s=5.0)  # would linger: close must not wait for it
        ing.start()
        for i in range(10):
            assert ing.offer("c", seq_row(i))
        t0 = time.monotonic()
        await ing.close()
        assert time.monotonic() - t0 < 2
        assert ing.state == "down"
        with pytest.raises(RuntimeError):
            await ing.put("c", seq_row(10))
    assert await fetch(pg_url, "SELECT count(*) FROM c") == [(10,)]


async def test_a_full_spool_keeps_rows_in_memory_until_the_database_is_back(
        outage_db: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url, name = outage_db
    await execute(url, SEQ_DDL.format(t="a"))
    spool = Spool(tmp_path / "spool", max_bytes=8_000)  # room for about 130 rows
    try:
        async with open_pool(url) as pool, running(Ingestor(
                pool, [seq_spec("a")], max_rows=400, batch_rows=100, retry_s=0.2, spool=spool,
                connect_timeout_s=1.0)) as ing:
            await cut_off(name)
            accepted, deadline = 0, time.monotonic() + 5
            while ing.state != "down":  # until the spool refuses a batch: then rows wait in memory
                assert time.monotonic() < deadline
                accepted += ing.offer("a", seq_row(accepted))
                await asyncio.sleep(0.001)
            while ing.offer("a", seq_row(accepted)):
                accepted += 1
            await asyncio.sleep(0.5)  # a few more refusals: logged once
            spooled = ing.stats()["spooled"]
            assert 0 < spooled == spool.pending_rows and ing.stats()["queue_depth"] == 400
            assert accepted == spooled + 400
            await execute(pg.BASE_URL, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            await ing.flush(timeout_s=20)
            await until(lambda: ing.state == "ok" and spool.pending_rows == 0, 10)
            stats = ing.stats()
    finally:
        spool.close()
    assert stats["replayed"] == spooled and stats["written"] == 400 and stats["dropped"] >= 1
    assert caplog.text.count("spool refused") == 1
    back = await fetch(url, "SELECT seq FROM a ORDER BY n")
    assert [r[0] for r in back] == list(range(accepted))
