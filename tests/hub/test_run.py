"""``hub run`` as a user runs it: embedded PostgreSQL and broker, banner, API, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import pg
from tests.support.media import make_test_clip

state_dir = pg.state_dir
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("run") / "clip.mp4"
    make_test_clip(path, seconds=4, width=640, height=360, fps=25)
    return path


def _config(tmp: Path, clip: Path) -> Path:
    cfg = tmp / "hub.yaml"
    cfg.write_text(f"""
hub: {{name: run-test}}
http: {{host: 127.0.0.1, port: 0}}
cameras:
  - id: cam1
    name: test camera
    grid: "440111001001"
    url: "{clip.as_uri()}"
    loop: true
devices:
  - id: door-1
    kind: door_contact
    grid: "440111001001"
    topic: zigbee2mqtt/door-1
    cameras: [cam1]
  - id: lock-1
    kind: smart_lock
    grid: "440111001001"
    topic: zigbee2mqtt/lock-1
demo:
  sensors: true
  sensor_interval_s: 2
""")
    return cfg


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture
def hub_process(tmp_path: Path, clip: Path, state_dir: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_STATE_DIR"] = str(state_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run", "-c", str(_config(tmp_path, clip))],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        yield proc, state_dir
    finally:
        if proc.poll() is None:
            for child in _children(proc.pid):
                child.kill()
            proc.kill()
            proc.wait()


def _wait_for_banner(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[str, list[str]]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "dashboard:" in line:
            return line.split("dashboard:", 1)[1].strip(), lines
    pytest.fail("no banner within the timeout; output:\n" + "\n".join(lines))


def test_run_embedded_and_ctrl_c_stops_everything_within_5_s(
    hub_process: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, state = hub_process
    url, lines = _wait_for_banner(proc)
    assert url.startswith("http://127.0.0.1:")
    text = "\n".join(lines)
    assert "embedded PostgreSQL" in text and "embedded MQTT broker" in text

    postgres = [p for p in _children(proc.pid) if "postgres" in " ".join(p.cmdline())]
    assert postgres, "embedded PostgreSQL is not a child of the hub"

    deadline = time.monotonic() + 30
    health: dict[str, object] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "api/health", timeout=5) as resp:
            health = json.load(resp)
        with urllib.request.urlopen(url + "api/cameras", timeout=5) as resp:
            cams = json.load(resp)
        with urllib.request.urlopen(url + "api/devices", timeout=5) as resp:
            devices = json.load(resp)
        if cams[0]["status"] == "online" and any(d["status"] == "online" for d in devices):
            break
        time.sleep(0.5)
    assert cams[0]["status"] == "online", cams
    assert any(d["status"] == "online" for d in devices), devices
    with urllib.request.urlopen(url + "api/health", timeout=5) as resp:
        health = json.load(resp)
    assert health["status"] == "ok", health
    assert health["components"]["database"] == "embedded"  # type: ignore[index]
    assert health["components"]["mqtt"] == "embedded"  # type: ignore[index]

    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    took = time.monotonic() - t0
    assert proc.returncode == 0, out
    assert took < 5.0, f"shutdown took {took:.1f} s:\n{out}"
    assert "hub stopped" in out
    for p in postgres:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, "embedded PostgreSQL left running"
    assert not (state / "pg" / "data" / "postmaster.pid").exists()
