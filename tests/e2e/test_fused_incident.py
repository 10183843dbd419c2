"""End to end through every real boundary.

A GStreamer RTSP server plays a CCTV scene in which a person walks into the door zone;
the real Mosquitto carries a Zigbee2MQTT door contact opening while its lock is locked
(a forced door); the hub runs whole (stream reader, SSD detector, tracker, zone rule,
MQTT device adapter, alert engine, PostgreSQL, web app). Exactly one fused incident must
appear in the database and on ``WS /ws/events``, with a snapshot that is a real JPEG.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import psycopg
import pytest

from adapters.mqtt_client import MqttClient
from hub.app import Hub
from hub.config_loader import parse_config
from hub.demo.scenes import SceneSpec, generate_scene
from tests.adapters.mqtt_support import require_mosquitto, unique
from tests.support import pg
from tests.support.rtsp import RtspServer

pg_url = pg.pg_url
state_dir = pg.state_dir

MIN_DWELL_S = 1.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """A 20 s courtyard clip: the first person walks into the door zone at 1 s and stands there."""
    path = tmp_path_factory.mktemp("e2e") / "door.mp4"
    truth = generate_scene(path, SceneSpec(seconds=20, size=(960, 540), first_entry_s=1.0, presence=0.6,
                                           visit_share=1.0, seed=7))
    assert truth.expected_intrusions(MIN_DWELL_S), "scene must contain a zone visit"
    return path, truth.zone


@pytest.fixture
def rtsp(scene: tuple[Path, list[tuple[float, float]]]) -> Iterator[RtspServer]:
    with RtspServer({"door": scene[0]}, user="viewer", password="pa55-e2e") as server:
        yield server


def _config(rtsp_url: str, zone: list[tuple[float, float]], topic: str, db_url: str, state: Path) -> str:
    polygon = json.dumps([list(p) for p in zone])
    return f"""
hub: {{name: e2e, state_dir: "{state}"}}
http: {{host: 127.0.0.1, port: 0}}
database: {{url: "{db_url}"}}
mqtt: {{url: "mqtt://127.0.0.1:1883", client_id: "{topic}-hub"}}
detect:
  fps: 5
  width: 640
cameras:
  - id: cam-door
    name: door camera
    grid: "440111001001"
    url: "{rtsp_url}"
    zones:
      - id: door
        polygon: {polygon}
        min_dwell_s: {MIN_DWELL_S}
devices:
  - id: door-1
    kind: door_contact
    grid: "440111001001"
    topic: {topic}/door-1
    cameras: [cam-door]
    lock: lock-1
  - id: lock-1
    kind: smart_lock
    grid: "440111001001"
    topic: {topic}/lock-1
    cameras: [cam-door]
alerts:
  correlation_window_s: 30
demo:
  force_night: true
"""


def _parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@contextlib.asynccontextmanager
async def running(hub: Hub) -> AsyncIterator[Hub]:
    task = asyncio.create_task(hub.run(), name="hub")
    ready = asyncio.create_task(hub.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises the start-up error
    assert ready in done, "hub did not become ready within 60 s"
    try:
        yield hub
    finally:
        hub.stop()
        t0 = time.monotonic()
        await asyncio.wait_for(task, 10)
        assert time.monotonic() - t0 < 5.0, "shutdown exceeded the 5 s budget"


async def test_person_in_zone_and_forced_door_make_one_incident(
    rtsp: RtspServer, scene: tuple[Path, list[tuple[float, float]]], pg_url: str, state_dir: Path
) -> None:
    require_mosquitto()
    topic = unique("e2e")
    text = _config(rtsp.url("door", user="viewer", password="pa55-e2e"), scene[1], topic, pg_url, state_dir)
    cfg = parse_config(text, "e2e.yaml", env={})
    hub = Hub(cfg)
    async with running(hub), aiohttp.ClientSession() as http:
        assert hub.http_url is not None
        base = hub.http_url.rstrip("/")
        ws = await http.ws_connect(f"{base}/ws/events")
        # The village system's devices: the lock reports locked, then the door opens with no unlock.
        async with MqttClient("mqtt://127.0.0.1:1883", f"{topic}-devices", clean_session=True) as dev:
            await dev.publish(f"{topic}/lock-1", {"state": "LOCK", "lock_state": "locked", "battery": 90})
            await asyncio.sleep(1.0)
            await dev.publish(f"{topic}/door-1", {"contact": False, "battery": 88, "tamper": False})
            await dev.drain(5)

        incidents: dict[str, dict[str, object]] = {}
        deadline = time.monotonic() + 40
        fused: dict[str, object] | None = None
        while time.monotonic() < deadline and fused is None:
            msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data["type"] != "incident":
                continue
            inc = data["data"]
            incidents[inc["id"]] = inc
            kinds = {s.get("kind") or s.get("rule") for s in inc["sources"]}
            if {"door_forced", "intrusion"} <= kinds:
                fused = inc
        assert fused is not None, f"no fused incident on the WebSocket; got {list(incidents.values())}"
        # A little longer: the person keeps standing in the zone; nothing new may open.
        await asyncio.sleep(3)

        assert fused["class"] == "emergency"  # forced door at night
        assert fused["grid"] == "440111001001"
        sources = {s.get("kind") or s.get("rule"): s for s in fused["sources"]}  # type: ignore[union-attr]
        assert sources["door_forced"]["id"] == "door-1"
        assert sources["intrusion"]["id"] == "cam-door"
        assert sources["intrusion"]["zone"] == "door"
        snaps = [e["url"] for e in fused["evidence"] if e["kind"] == "snapshot"]  # type: ignore[union-attr]
        assert snaps, "fused incident carries no snapshot"
        async with http.get(f"{base}{snaps[0]}") as resp:
            assert resp.status == 200
            img = cv2.imdecode(np.frombuffer(await resp.read(), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[1] == 640

        async with http.get(f"{base}/api/incidents") as resp:
            listed = await resp.json()
        async with http.get(f"{base}/metrics") as resp:
            metrics = _parse_metrics(await resp.text())
        await ws.close()

    assert metrics['hub_frames_decoded_total{camera="cam-door"}'] > 50
    assert metrics['hub_frames_analysed_total{camera="cam-door"}'] > 5
    assert sum(v for k, v in metrics.items() if k.startswith("hub_incidents_total{")) == 1, metrics
    assert metrics["hub_capture_to_incident_seconds_count"] >= 1

    assert [i["id"] for i in listed] == [fused["id"]], listed
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT id, class, sources FROM incidents").fetchall()
    assert len(rows) == 1, rows
    assert rows[0][0] == fused["id"]
    stored_kinds = {s.get("kind") or s.get("rule") for s in rows[0][2]}
    assert {"door_forced", "intrusion"} <= stored_kinds
    # The camera password never reached the API.
    assert "pa55-e2e" not in json.dumps(listed)
