"""`hub adapters list` and `hub probe`, run as the real command against real peers."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from acme_gate.simulator import AcmeGateSimulator

from tests.support.media import make_test_clip

HUB = [sys.executable, "-m", "hub.cli"]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-probe-token-5"


async def hub(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *HUB, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_adapters_list_shows_builtin_and_entry_point_kinds() -> None:
    code, out, _ = await hub("adapters", "list", "--json")
    assert code == 0
    rows = {r["kind"]: r for r in json.loads(out)["adapters"]}
    assert rows["onvif"]["origin"] == "builtin"
    assert "ptz" in rows["onvif"]["capabilities"]
    assert rows["acme-gate"]["origin"].startswith("entry point acme-gate")
    code, out, _ = await hub("adapters", "list")
    assert code == 0
    assert "acme-gate" in out
    assert "KIND" in out


async def test_probe_reports_the_device_and_live_events() -> None:
    sim = await AcmeGateSimulator(TOKEN).start()
    try:
        snippet = json.dumps({"kind": "acme-gate", "id": "gate", "url": sim.url, "token": TOKEN, "wait_s": 1})

        async def door_later() -> None:
            await asyncio.sleep(3.0)
            await sim.emit("door_forced")

        emitter = asyncio.create_task(door_later())
        code, out, err = await hub("probe", snippet, "--events", "6", "--json")
        await emitter
    finally:
        await sim.stop()
    assert code == 0, err
    report = json.loads(out)
    assert report["device"]["model"] == "AG-200"
    assert [e["kind"] for e in report["events"]] == ["door_forced"]
    assert TOKEN not in out + err


async def test_probe_exit_codes_say_what_went_wrong(tmp_path: Path) -> None:
    sim = await AcmeGateSimulator(TOKEN).start()
    try:
        wrong = json.dumps({"kind": "acme-gate", "id": "g", "url": sim.url, "token": "nope-nope-nope"})
        code, out, err = await hub("probe", wrong)
        assert code == 3, err
        assert "credentials refused" in err
        assert "nope-nope-nope" not in out + err
    finally:
        await sim.stop()
    nothing_there = "kind: acme-gate\nid: g\nurl: http://127.0.0.1:9\ntoken: x\ntimeout_s: 1\n"
    code, _, err = await hub("probe", nothing_there)
    assert code == 4, err
    code, _, err = await hub("probe", "id: g\nurl: rtsp://10.0.0.1/x\ntransprot: udp\n")
    assert code == 2
    assert "<snippet>:3: transprot" in err
    assert "did you mean 'transport'" in err


async def test_probe_a_camera_from_a_config_file(tmp_path: Path) -> None:
    clip = make_test_clip(tmp_path / "c.mp4", 1.0, 320, 180, 10)
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"cameras:\n  - id: yard\n    url: {clip.as_uri()}\n")
    code, out, err = await hub("probe", "-c", str(cfg), "--id", "yard")
    assert code == 0, err
    assert "ok: file yard" in out
    assert "320" in out
    assert "main stream" in out
    code, _, err = await hub("probe", "-c", str(cfg), "--id", "nope")
    assert code == 2
    assert "ids: yard" in err


@pytest.mark.parametrize("args", [["probe"], ["probe", "-c", "x.yaml"]])
async def test_probe_without_an_entry_explains(args: list[str]) -> None:
    code, _, err = await hub(*args)
    assert code == 2
    assert "hint" in err
