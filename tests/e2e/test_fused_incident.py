"""End to end through every real boundary.

A GStreamer RTSP server plays a CCTV scene in which a person walks into the door zone;
the real Mosquitto carries a Zigbee2MQTT door contact opening while its lock is locked
(a forced door); the hub runs whole (stream reader, SSD detector, tracker, zone rule,
MQTT device adapter, alert engine, PostgreSQL, web app). Exactly one fused incident must
appear in the database and on ``WS /ws/events``, with a snapshot that is a real JPEG, in the
right grid and class; and its notices must reach the right people: the grid worker's and the
duty leader's webhooks (a local aiohttp receiver checking the HMAC signature), the grid's MQTT
topic on the real broker, and the department's WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import cv2
import numpy as np
import psycopg
import pytest
from aiohttp import web

from adapters.mqtt_client import MqttClient
from alerts.channels.webhook import verify_signature
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


SECRET = "e2e-webhook-secret"


def _config(rtsp_url: str, zone: list[tuple[float, float]], topic: str, db_url: str, state: Path, *,
            hook: str) -> str:
    polygon = json.dumps([list(p) for p in zone])
    return f"""
hub: {{name: e2e, state_dir: "{state}"}}
http: {{host: 127.0.0.1, port: 0}}
database: {{url: "{db_url}"}}
mqtt: {{url: "mqtt://127.0.0.1:1883", client_id: "{topic}-hub", topic_prefix: "{topic}"}}
grids:
  - {{code: "440111", name: 白云区, level: district}}
  - {{code: "440111001", name: 鹤龙街, level: street, parent: "440111"}}
  - {{code: "440111001001", name: 一网格, level: grid, parent: "440111001"}}
  - {{code: "440111001002", name: 二网格, level: grid, parent: "440111001"}}
people:
  - {{id: worker-1, roles: [grid_worker], grids: ["440111001001"],
     channels: [{{type: webhook, url: "{hook}/worker-1", secret: {SECRET}}}]}}
  - {{id: worker-2, roles: [grid_worker], grids: ["440111001002"],
     channels: [{{type: webhook, url: "{hook}/worker-2", secret: {SECRET}}}]}}
  - {{id: cop, roles: [department], department: 公安, grids: ["440111001"], channels: [{{type: ws}}]}}
  - {{id: duty, roles: [duty_leader], grids: ["440111001"],
     channels: [{{type: webhook, url: "{hook}/duty", secret: {SECRET}}}]}}
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


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A local receiver that checks each notice's HMAC signature and keeps (recipient, body)."""
    got: list[tuple[str, dict[str, Any]]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_signature(SECRET, request.headers["X-Sanwang-Timestamp"], body,
                                request.headers.get("X-Sanwang-Signature")):
            return web.Response(status=401)
        got.append((request.match_info["who"], json.loads(body)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook/{who}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook", got
    finally:
        await runner.cleanup()


async def test_person_in_zone_and_forced_door_make_one_incident(
    rtsp: RtspServer, scene: tuple[Path, list[tuple[float, float]]], pg_url: str, state_dir: Path
) -> None:
    require_mosquitto()
    topic = unique("e2e")
    app_messages: list[dict[str, Any]] = []

    async def mobile_app(client: aiomqtt.Client) -> None:  # another platform on the grid's topic
        async for m in client.messages:
            assert m.qos == 1 and isinstance(m.payload, bytes)
            app_messages.append(json.loads(m.payload))

    async with webhook_receiver() as (hook, hooked), \
            aiomqtt.Client("127.0.0.1", 1883, identifier=f"{topic}-app") as app_client:
        await app_client.subscribe(f"{topic}/440111001001/incidents", qos=1)
        app_task = asyncio.create_task(mobile_app(app_client))
        text = _config(rtsp.url("door", user="viewer", password="pa55-e2e"), scene[1], topic, pg_url,
                       state_dir, hook=hook)
        hub = Hub(parse_config(text, "e2e.yaml", env={}))
        try:
            fused = await _run_scene(hub, topic, pg_url, lambda: {"worker-1", "duty"} <= {
                who for who, _ in hooked} and bool(app_messages))
        finally:
            app_task.cancel()
    # The notices: the grid worker and the duty leader (emergency) by signed webhook, nobody of the
    # other grid; the grid's MQTT topic for apps and other platforms.
    mine = [(who, body) for who, body in hooked if body["incident"]["id"] == fused["id"]]
    assert {who for who, _ in mine} == {"worker-1", "duty"}, hooked
    assert all(body["incident"]["grid"] == "440111001001" for _, body in mine)
    assert len({body["key"] for _, body in mine}) == len(mine), "one delivery per notice key"
    assert any(m["id"] == fused["id"] and m["notice"]["key"] for m in app_messages), app_messages
    with psycopg.connect(pg_url) as conn:
        jobs = conn.execute("SELECT channel->>'person', channel->>'type', state FROM dispatch_jobs "
                            "WHERE incident_id = %s", (fused["id"],)).fetchall()
    assert {(r, c) for r, c, _ in jobs} >= {("worker-1", "webhook"), ("duty", "webhook"), ("cop", "ws")}, jobs
    assert "worker-2" not in {r for r, _, _ in jobs}
    assert {st for _, _, st in jobs} == {"done"}, jobs


async def _run_scene(hub: Hub, topic: str, pg_url: str, notified: Callable[[], bool]) -> dict[str, Any]:
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
        for _ in range(150):  # the notices, while the hub still runs (15 s at most)
            if notified():
                break
            await asyncio.sleep(0.1)

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
    return fused
