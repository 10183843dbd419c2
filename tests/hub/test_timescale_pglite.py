"""Spike: what real TimescaleDB 2.23 in PGlite (tests/support/timescale.py) does for psycopg 3.

Each test runs in its own schema (``search_path = <schema>, public``) of the session's one server.
Time series are laid out from a fixed UTC midnight ten days ago, so chunk counts are exact.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from tests.support import timescale

timescale_server = timescale.timescale_server
timescale_url = timescale.timescale_url
timescale_schema_url = timescale.timescale_schema_url

BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=10)
STEP = timedelta(minutes=20)
ROWS = 600  # 200 h = 8 1/3 days from BASE: 9 one-day chunks
DEVICES = ("d0", "d1", "d2")


def _rows(n: int = ROWS, start: int = 0) -> list[tuple[datetime, str, float]]:
    return [(BASE + STEP * i, DEVICES[i % 3], float(i)) for i in range(start, start + n)]


def _expected_daily(rows: list[tuple[datetime, str, float]]) -> list[tuple[datetime, str, int, float]]:
    groups: dict[tuple[datetime, str], list[float]] = {}
    for at, device, v in rows:
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        groups.setdefault((day, device), []).append(v)
    return [(day, dev, len(vs), sum(vs) / len(vs)) for (day, dev), vs in sorted(groups.items())]


DAILY = (
    "SELECT time_bucket('1 day', ts) AS day, device_id, count(*), avg(v) FROM m GROUP BY 1, 2 ORDER BY 1, 2"
)


def _hypertable(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE m (ts timestamptz NOT NULL, device_id text NOT NULL, v double precision)")
    conn.execute("SELECT create_hypertable('m', by_range('ts', INTERVAL '1 day'))")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO m VALUES (%s, %s, %s)", _rows())


def _one(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_server_is_real_timescaledb(timescale_server: timescale.TimescaleServer) -> None:
    assert timescale_server.version.startswith("2.23")
    assert timescale_server.startup_s < 20  # measured ≈ 2.5 s (node + WASM + CREATE EXTENSION)
    with psycopg.connect(timescale_server.url, autocommit=True) as conn:
        assert _one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'") == "2.23.0-dev"
        assert _one(conn, "SHOW server_version").startswith("17.")
        assert _one(conn, "SELECT current_database()") == "template1"  # the URL's database is ignored
        assert _one(conn, "SHOW search_path") == '"$user", public'
        assert _one(conn, "SHOW TimeZone") == "GMT"


def test_hypertable_inserts_and_time_bucket(timescale_schema_url: str) -> None:
    with psycopg.connect(timescale_schema_url, autocommit=True) as conn:
        _hypertable(conn)  # executemany of 600 rows (psycopg pipelines them)
        assert (
            _one(
                conn,
                "SELECT num_chunks FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = current_schema() AND hypertable_name = 'm'",
            )
            == 9
        )
        assert conn.execute(DAILY).fetchall() == _expected_daily(_rows())
        # One INSERT of 5000 rows (~250 kB, far over the 64 kB that crashes pglite-socket's handler).
        more = _rows(5000, start=ROWS)
        values = sql.SQL(", ").join(sql.SQL("({}, {}, {})").format(*map(sql.Literal, r)) for r in more)
        assert conn.execute(sql.SQL("INSERT INTO m VALUES {}").format(values)).rowcount == 5000
        assert _one(conn, "SELECT length(%s)", ("x" * 2_000_000,)) == 2_000_000  # a 2 MB parameter
        assert _one(conn, "SELECT count(*) FROM m") == ROWS + 5000
        gapfill = conn.execute(
            "SELECT time_bucket_gapfill('6 hours', ts) AS b, count(v) FROM m WHERE device_id = 'd0' "
            "AND ts >= %s AND ts < %s GROUP BY b ORDER BY b",
            (BASE - timedelta(hours=12), BASE + timedelta(hours=12)),
        ).fetchall()
        assert [n for _, n in gapfill] == [None, None, 6, 6]  # gapfill leaves empty buckets NULL
        assert conn.execute(
            "SELECT first(v, ts), last(v, ts) FROM m WHERE ts < %s", (BASE + timedelta(days=1),)
        ).fetchone() == (0.0, 71.0)


def test_compression_keeps_query_results(timescale_schema_url: str) -> None:
    with psycopg.connect(timescale_schema_url, autocommit=True) as conn:
        _hypertable(conn)
        before = conn.execute(DAILY).fetchall()
        conn.execute(
            "ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', "
            "timescaledb.compress_orderby = 'ts DESC')"
        )
        job = _one(conn, "SELECT add_compression_policy('m', INTERVAL '3 days')")
        oldest = _one(conn, "SELECT show_chunks('m') LIMIT 1")
        assert _one(conn, "SELECT compress_chunk(%s)", (oldest,)) == oldest
        compressed = conn.execute(
            "SELECT chunk_name FROM timescaledb_information.chunks WHERE hypertable_schema "
            "= current_schema() AND is_compressed ORDER BY range_start"
        ).fetchall()
        assert [f"_timescaledb_internal.{c}" for (c,) in compressed] == [oldest]
        assert conn.execute(DAILY).fetchall() == before
        # The policy never runs by itself (no background workers); run_job runs it now.
        conn.execute("CALL run_job(%s)", (job,))
        done = conn.execute(
            "SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM "
            "timescaledb_information.chunks WHERE hypertable_schema = current_schema()"
        ).fetchone()
        assert done == (7, 9)  # every chunk ending more than 3 days ago
        assert conn.execute(DAILY).fetchall() == before
        conn.execute("INSERT INTO m VALUES (%s, 'd9', -1)", (BASE,))  # into a compressed chunk
        assert _one(conn, "SELECT count(*) FROM m WHERE device_id = 'd9'") == 1
        stats = conn.execute(
            "SELECT total_chunks, number_compressed_chunks FROM hypertable_compression_stats('m')"
        ).fetchone()
        assert stats == (9, 7)
        assert _one(conn, "SELECT decompress_chunk(%s)", (oldest,)) == oldest


def test_retention_policy_and_drop_chunks(timescale_schema_url: str) -> None:
    with psycopg.connect(timescale_schema_url, autocommit=True) as conn:
        _hypertable(conn)
        job = _one(conn, "SELECT add_retention_policy('m', drop_after => INTERVAL '8 days')")
        dropped = conn.execute(
            "SELECT drop_chunks('m', older_than => %s::timestamptz)", (BASE + timedelta(days=1),)
        ).fetchall()
        assert len(dropped) == 1
        assert _one(conn, "SELECT min(ts) FROM m") == BASE + timedelta(days=1)
        conn.execute("CALL run_job(%s)", (job,))  # drops the chunks ending before now() - 8 days
        assert _one(conn, "SELECT min(ts) FROM m") == BASE + timedelta(days=2)
        # As upstream (timescale/timescaledb#5188, #7904): run_job is not recorded in job_stats.
        stats = conn.execute(
            "SELECT total_runs, last_run_status, job_status FROM "
            "timescaledb_information.job_stats WHERE job_id = %s",
            (job,),
        ).fetchone()
        assert stats == (None, None, "Scheduled")
        conn.execute("SELECT remove_retention_policy('m')")
        assert _one(conn, "SELECT count(*) FROM timescaledb_information.jobs WHERE job_id = %s", (job,)) == 0


def test_continuous_aggregate_refresh_and_policy(timescale_schema_url: str) -> None:
    with psycopg.connect(timescale_schema_url, autocommit=True) as conn:
        _hypertable(conn)
        conn.execute(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS m_daily WITH (timescaledb.continuous, "
            "timescaledb.materialized_only = true) AS SELECT time_bucket('1 day', ts) AS day, "
            "device_id, count(*) AS n, avg(v) AS av FROM m GROUP BY 1, 2 WITH NO DATA"
        )
        assert _one(conn, "SELECT count(*) FROM m_daily") == 0
        # Untyped NULL windows fail ("could not determine data type of parameter $2"), as on any server.
        with pytest.raises(psycopg.errors.IndeterminateDatatype):
            conn.execute("CALL refresh_continuous_aggregate(%s::regclass, %s, %s)", ("m_daily", None, None))
        conn.execute(
            "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
            ("m_daily", None, None),
        )
        assert conn.execute("SELECT * FROM m_daily ORDER BY 1, 2").fetchall() == _expected_daily(_rows())
        job = _one(
            conn,
            "SELECT add_continuous_aggregate_policy('m_daily', start_offset => INTERVAL '30 days', "
            "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes', "
            "if_not_exists => TRUE)",
        )
        late = [(BASE + timedelta(hours=1), "d0", 1000.0)]
        conn.execute("INSERT INTO m VALUES (%s, %s, %s)", late[0])
        assert _one(conn, "SELECT sum(n) FROM m_daily") == ROWS  # materialised only: not yet
        conn.execute("CALL run_job(%s)", (job,))
        assert conn.execute("SELECT * FROM m_daily ORDER BY 1, 2").fetchall() == _expected_daily(
            _rows() + late
        )
        # Real-time aggregation (what hub.storage.rollups uses) adds the rows past the watermark.
        conn.execute("ALTER MATERIALIZED VIEW m_daily SET (timescaledb.materialized_only = false)")
        conn.execute("INSERT INTO m VALUES (%s, 'd1', 5)", (datetime.now(UTC),))
        assert _one(conn, "SELECT sum(n) FROM m_daily") == ROWS + 2
        info = conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates "
            "WHERE view_schema = current_schema()"
        ).fetchall()
        assert info == [("m_daily", False)]


def test_information_views_list_jobs_hypertables_chunks(timescale_schema_url: str) -> None:
    with psycopg.connect(timescale_schema_url, autocommit=True) as conn:
        # The hub's own call: the older create_hypertable signature, migrating existing rows.
        conn.execute("CREATE TABLE m (ts timestamptz NOT NULL, device_id text NOT NULL, v double precision)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO m VALUES (%s, %s, %s)", _rows())
        conn.execute(
            "SELECT create_hypertable(%s::regclass, %s::name, chunk_time_interval => INTERVAL '1 day', "
            "if_not_exists => TRUE, migrate_data => TRUE)",
            ("m", "ts"),
        )
        conn.execute("ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id')")
        compress = "SELECT add_compression_policy('m', %s::interval)"
        first = _one(conn, compress, (timedelta(days=7),))
        retention = _one(conn, "SELECT add_retention_policy('m', %s::interval)", (timedelta(days=30),))
        assert _one(conn, "SELECT remove_compression_policy('m', if_exists => TRUE)") is True
        second = _one(conn, compress, (timedelta(days=7),))
        rows = conn.execute(
            "SELECT job_id, proc_name, hypertable_name, config FROM timescaledb_information.jobs "
            "WHERE hypertable_schema = current_schema() ORDER BY job_id"
        ).fetchall()
        assert second > first
        assert {r[0]: r[1] for r in rows} == {retention: "policy_retention", second: "policy_compression"}
        assert all(r[2] == "m" and isinstance(r[3], dict) for r in rows)
        hyper = conn.execute(
            "SELECT hypertable_name, num_dimensions, num_chunks, compression_enabled FROM "
            "timescaledb_information.hypertables WHERE hypertable_schema = current_schema()"
        )
        assert hyper.fetchall() == [("m", 1, 9, True)]
        chunks = conn.execute(
            "SELECT range_start, range_end FROM timescaledb_information.chunks "
            "WHERE hypertable_schema = current_schema() ORDER BY range_start"
        ).fetchall()
        assert chunks[0] == (BASE, BASE + timedelta(days=1)) and len(chunks) == 9
        dims = conn.execute(
            "SELECT column_name, time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = current_schema()"
        ).fetchall()
        assert dims == [("ts", timedelta(days=1))]


async def _pipeline(conn: psycopg.AsyncConnection[Any], *queries: str) -> None:
    async with conn.pipeline():
        for query in queries:
            await conn.execute(query)


async def _savepoint(conn: psycopg.AsyncConnection[Any], *queries: str) -> None:
    async with conn.transaction():
        for query in queries:
            await conn.execute(query)


async def test_async_prepared_pipeline_binary_and_pool_of_one(timescale_schema_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(timescale_schema_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE m (ts timestamptz NOT NULL, device_id text NOT NULL, v double precision, "
            "meta jsonb)"
        )
        await conn.execute("SELECT create_hypertable('m', by_range('ts', INTERVAL '1 day'))")
        async with conn.cursor() as cur:
            for i in range(0, ROWS, 100):  # small batches, server-side bound parameters
                await cur.executemany(
                    "INSERT INTO m VALUES (%s, %s, %s, %s)",
                    [(*r, Jsonb({"i": int(r[2])})) for r in _rows(100, start=i)],
                )
        for day in range(6):  # prepared server-side from the 5th execution on, then reused
            cur = await conn.execute(
                "SELECT count(*) FROM m WHERE ts >= %s AND ts < %s",
                (BASE + timedelta(days=day), BASE + timedelta(days=day + 1)),
                prepare=True,
            )
            assert await cur.fetchone() == (72,)
        cur = await conn.execute("SELECT statement FROM pg_prepared_statements")
        assert "SELECT count(*) FROM m WHERE ts >= $1 AND ts < $2" in {r[0] for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT %s::bytea, %s::timestamptz, %s::jsonb", (b"\x00\xff", BASE, Jsonb([1])), binary=True
        )
        assert await cur.fetchone() == (b"\x00\xff", BASE, [1])
        async with conn.pipeline() as pipe:
            a = await conn.execute("SELECT max(v) FROM m")
            b = await conn.execute("SELECT meta->>'i' FROM m ORDER BY ts DESC LIMIT 1")
            await pipe.sync()
        assert (await a.fetchone(), await b.fetchone()) == ((599.0,), ("599",))
        with pytest.raises(psycopg.errors.DivisionByZero):
            await _pipeline(conn, "SELECT 1", "SELECT 1 / 0")
        async with conn.transaction():
            await conn.execute("INSERT INTO m VALUES (now(), 'tx', 0, NULL)")
            with pytest.raises(psycopg.errors.UniqueViolation):  # rolls back to the savepoint only
                await _savepoint(
                    conn,
                    "CREATE UNIQUE INDEX ON m (device_id, ts)",
                    "INSERT INTO m SELECT * FROM m WHERE device_id = 'tx'",
                )
        cur = await conn.execute("SELECT count(*) FROM m WHERE device_id = 'tx'")
        assert await cur.fetchone() == (1,)
    # A pool of ONE connection serialises concurrent tasks; a larger pool would wait on the server.
    async with AsyncConnectionPool(
        timescale_schema_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    ) as pool:

        async def bucket(device: str) -> int:
            async with pool.connection() as c:
                cur = await c.execute("SELECT count(*) FROM m WHERE device_id = %s", (device,))
                row = await cur.fetchone()
                return int(row[0]) if row else -1

        assert await asyncio.gather(*(bucket(d) for d in DEVICES)) == [200, 200, 200]


def test_sessions_are_clean_and_schemas_isolate(
    timescale_server: timescale.TimescaleServer, timescale_schema_url: str
) -> None:
    with psycopg.connect(timescale_schema_url, autocommit=True) as conn:
        assert _one(conn, "SELECT current_schemas(false)")[1] == "public"
        schema = _one(conn, "SELECT current_schema()")
        assert schema.startswith("ts_")
        conn.execute("CREATE TABLE m (ts timestamptz NOT NULL)")
        conn.execute("SELECT create_hypertable('m', by_range('ts'))")
        for _ in range(6):
            conn.execute("SELECT %s::int", (1,))  # auto-prepared as _pg3_0
        conn.execute("SET search_path = public")
        conn.execute("SELECT pg_advisory_lock(42)")
        conn.execute("CREATE TEMP TABLE scratch (i int)")
    left = psycopg.connect(timescale_server.url)  # not autocommit: leaves a transaction open
    left.execute("CREATE TABLE public.never (i int)")
    left.close()
    with psycopg.connect(timescale_server.url, autocommit=True) as conn:
        assert _one(conn, "SELECT count(*) FROM pg_prepared_statements") == 0
        for _ in range(6):
            conn.execute("SELECT %s::int", (2,))  # pglite-socket: "prepared statement _pg3_0 already exists"
        assert _one(conn, "SHOW search_path") == '"$user", public'
        assert _one(conn, "SELECT pg_try_advisory_lock(42)") is True
        assert _one(conn, "SELECT to_regclass('scratch')") is None
        assert _one(conn, "SELECT to_regclass('public.never')") is None
        assert _one(conn, "SELECT to_regclass(%s)", (f"{schema}.m",)) == f"{schema}.m"
        assert _one(conn, "SELECT to_regclass('m')") is None  # not on this session's search_path
        conn.execute("SELECT pg_advisory_unlock(42)")
    with psycopg.connect(timescale_server.schema_url("no_such_schema"), autocommit=True) as conn:
        assert _one(conn, "SELECT current_schemas(false)") == ["public"]


def test_one_connection_at_a_time(timescale_url: str) -> None:
    first = psycopg.connect(timescale_url, autocommit=True)
    second: dict[str, Any] = {}

    def connect() -> None:
        started = time.monotonic()
        with psycopg.connect(timescale_url, autocommit=True) as conn:
            second["waited"] = time.monotonic() - started
            second["value"] = _one(conn, "SELECT 2")

    thread = threading.Thread(target=connect)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive()  # queued behind `first`
    assert _one(first, "SELECT 1") == 1
    first.close()
    thread.join(5.0)
    assert second["value"] == 2 and second["waited"] >= 1.0


async def test_cancel_and_statement_timeout_cannot_interrupt(timescale_url: str) -> None:
    """A query blocks the single-threaded WASM backend to its end: no cancel, no statement_timeout."""
    async with await psycopg.AsyncConnection.connect(timescale_url, autocommit=True) as conn:
        await conn.execute("SET statement_timeout = '100ms'")
        started = time.monotonic()
        await conn.execute("SELECT pg_sleep(0.4)")  # PostgreSQL: QueryCanceled after 100 ms
        task = asyncio.create_task(conn.execute("SELECT pg_sleep(0.4)"))
        await asyncio.sleep(0.1)
        task.cancel()  # psycopg sends a CancelRequest; the server closes it once the query is done
        with pytest.raises(asyncio.CancelledError):
            await task
        assert 0.75 < time.monotonic() - started < 2.5  # both sleeps ran in full; the cancel did not stall
        assert await (await conn.execute("SELECT 1")).fetchone() == (1,)


def test_copy(timescale_schema_url: str) -> None:
    with psycopg.connect(timescale_schema_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE c (i int, s text)")
        with (
            pytest.raises(psycopg.errors.FeatureNotSupported, match="COPY FROM STDIN is not supported"),
            conn.cursor().copy("COPY c FROM STDIN") as copy,
        ):
            copy.write_row((1, "a"))
        conn.execute("INSERT INTO c VALUES (1, 'a'), (2, 'b')")
        with conn.cursor().copy("COPY (SELECT * FROM c ORDER BY i) TO STDOUT") as copy:
            assert list(copy.rows()) == [("1", "a"), ("2", "b")]
        with conn.transaction():
            with (
                pytest.raises(psycopg.errors.FeatureNotSupported),
                conn.transaction(),
                conn.cursor().copy("copy c (i, s) from stdin with (format csv)") as copy,
            ):
                copy.write(b"3,c\n")
            conn.execute("INSERT INTO c VALUES (3, 'c')")
        assert _one(conn, "SELECT count(*) FROM c") == 3


def _query_message(text: str, length: int) -> bytes:
    """A simple-protocol Query message of exactly ``length`` bytes (the text padded with spaces)."""
    body = text.encode().ljust(length - 6) + b"\0"
    return b"Q" + struct.pack("!i", len(body) + 4) + body


def _read_until(sock: socket.socket, received: bytes, ready_count: int) -> bytes:
    while received.count(b"Z\0\0\0\x05I") < ready_count:  # ReadyForQuery, idle
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {received!r:.300}"
        received += chunk
    return received


def test_messages_ending_on_an_8_kib_boundary_are_all_answered(
    timescale_server: timescale.TimescaleServer,
) -> None:
    # PGlite drops the rest of a call's input after a message ending at a multiple of 8192 bytes: psycopg's
    # executemany pipeline then hung 1 run in 5 ("cannot exit pipeline mode while busy"). server.mjs feeds
    # PGlite batches of <= 8 KiB. Here one write has messages ending at 4, 8 and 16 KiB, then one more.
    startup = struct.pack("!i", 196608) + b"user\0postgres\0\0"
    sizes = {"SELECT 1": 4096, "SELECT 2": 4096, "SELECT 3": 8192, "SELECT 4": 100}
    with socket.create_connection(("127.0.0.1", timescale_server.port), timeout=20) as sock:
        sock.sendall(struct.pack("!i", len(startup) + 4) + startup)
        assert sock.recv(13)[:1] == b"R"  # AuthenticationMD5Password: the password is not checked
        sock.sendall(b"p\0\0\0\x06x\0")
        received = _read_until(sock, b"", 1)
        sock.sendall(b"".join(_query_message(text, n) for text, n in sizes.items()))
        received = _read_until(sock, received, 5)
        sock.sendall(b"X\0\0\0\x04")
    for value in (b"1", b"2", b"3", b"4"):
        assert b"D\0\0\0\x0b\0\x01\0\0\0\x01" + value in received  # DataRow with the one column
