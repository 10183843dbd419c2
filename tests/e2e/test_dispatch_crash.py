"""A hub killed with SIGKILL in the middle of dispatching loses nothing and duplicates nothing.

Real parts end to end: the hub as a child process (``python -m hub.cli run``), the real Mosquitto
carrying Zigbee2MQTT tamper alarms from six door contacts, the real PostgreSQL, and a webhook
receiver (aiohttp, HMAC-checked, like an integrator's). The receiver first fails (503) and then
hangs, so when the hub is killed deliveries are pending and in flight. After a restart every
notice arrives, each incident exists once, and each idempotency key is accepted exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import psycopg
from aiohttp import web

from adapters.mqtt_client import MqttClient
from alerts.channels.webhook import verify_signature
from tests.adapters.mqtt_support import require_mosquitto, unique
from tests.support import pg

pg_url = pg.pg_url
state_dir = pg.state_dir
ROOT = Path(__file__).resolve().parents[2]
SECRET = "crash-test-secret-0123"
DOORS = 6


class Receiver:
    def __init__(self) -> None:
        self.mode = "fail"  # fail | hang | ok
        self.accepted: Counter[str] = Counter()
        self.attempts = 0
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if not verify_signature(SECRET, request.headers["X-Sanwang-Timestamp"], body,
                                request.headers.get("X-Sanwang-Signature")):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.mode == "fail":
            return web.Response(status=503)
        if self.mode == "hang":
            await asyncio.sleep(60)
        self.accepted[request.headers["X-Sanwang-Key"]] += 1
        return web.json_response({"ok": True})


def _config(tmp: Path, db_url: str, prefix: str, hook: str) -> Path:
    # six doors in one grid: grouping off, so each tamper alarm is its own incident and notice
    doors = "\n".join(f"  - {{id: {prefix}-d{i}, kind: door_contact, grid: G1, topic: {prefix}/d{i}}}"
                      for i in range(DOORS))
    cfg = tmp / "hub.yaml"
    cfg.write_text(f"""
hub: {{name: crash-test}}
http: {{host: 127.0.0.1, port: 0}}
database: {{url: "{db_url}"}}
mqtt: {{url: "mqtt://127.0.0.1:1883", client_id: "{prefix}-hub"}}
grids:
  - {{code: D, level: district}}
  - {{code: G1, level: grid, parent: D}}
people:
  - id: w1
    roles: [grid_worker]
    grids: [G1]
    channels: [{{type: webhook, url: "{hook}", secret: "{SECRET}"}}]
devices:
{doors}
dispatch: {{retry_base_s: 0.2, retry_max_s: 0.5, max_attempts: 100, lease_s: 3, workers: 8,
           group_window_s: 0}}
""")
    return cfg


def _start(cfg: Path, state: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_STATE_DIR"] = str(state)
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "run", "-c", str(cfg)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "dashboard:" in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("hub did not start:\n" + "".join(lines[-40:]))


def _kill(proc: subprocess.Popen[str]) -> None:
    for child in psutil.Process(proc.pid).children(recursive=True):
        child.kill()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


async def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(sql)
        return list(await cur.fetchall())


async def _until(what: str, check: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_sigkill_mid_dispatch_loses_and_duplicates_nothing(pg_url: str, state_dir: Path,
                                                                 tmp_path: Path) -> None:
    require_mosquitto()
    prefix = unique("crash")
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cfg = _config(tmp_path, pg_url, prefix, f"http://127.0.0.1:{port}/hook")
    proc = await asyncio.to_thread(_start, cfg, state_dir)
    try:
        async def all_open() -> bool:
            return (await _query(pg_url, "SELECT count(*) FROM incidents"))[0][0] == DOORS

        async with MqttClient("mqtt://127.0.0.1:1883", f"{prefix}-devices", clean_session=True) as dev:
            # the alarms repeat (as tamper switches do) until the just-started hub has subscribed;
            # repeats within the quiet time join the open incident instead of opening another
            deadline = time.monotonic() + 60
            while not await all_open():
                assert time.monotonic() < deadline, "timed out waiting for six incidents"
                for i in range(DOORS):
                    await dev.publish(f"{prefix}/d{i}", {"contact": True, "tamper": True}, qos=1)
                await asyncio.sleep(0.5)
        await _until("failed attempts", lambda: asyncio.sleep(0, receiver.attempts >= DOORS))
        receiver.mode = "hang"  # the next attempts stay in flight
        await asyncio.sleep(1.0)
        in_flight = await _query(pg_url, "SELECT count(*) FROM dispatch_jobs WHERE state = 'pending' "
                                         "AND leased_until > now() AND channel->>'type' = 'webhook'")
        await asyncio.to_thread(_kill, proc)
        assert in_flight[0][0] >= 1, "no delivery was in flight when the hub was killed"
        assert not receiver.accepted

        receiver.mode = "ok"
        proc = await asyncio.to_thread(_start, cfg, state_dir)

        async def all_done() -> bool:
            rows = await _query(pg_url, "SELECT count(*) FILTER (WHERE state <> 'done'), count(*) "
                                        "FROM dispatch_jobs")
            return rows[0][0] == 0 and rows[0][1] > 0

        await _until("every job delivered after the restart", all_done, 60)
        keys = {r[0] for r in await _query(pg_url, "SELECT key FROM dispatch_jobs "
                                                    "WHERE channel->>'type' = 'webhook'")}
        assert len(keys) == DOORS  # one "assigned" notice per incident for the grid worker
        assert set(receiver.accepted) == keys
        assert all(n == 1 for n in receiver.accepted.values()), receiver.accepted
        assert receiver.bad_signatures == 0
        assert (await _query(pg_url, "SELECT count(*) FROM incidents"))[0][0] == DOORS
        states = await _query(pg_url, "SELECT DISTINCT state FROM incidents")
        assert states == [("dispatched",)]
    finally:
        if proc.poll() is None:
            await asyncio.to_thread(_kill, proc)
        await runner.cleanup()
