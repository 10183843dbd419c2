"""The real runtime behind the web app, for API tests: :class:`hub.view.RuntimeView` wired as ``hub.app``
wires it — one :class:`IncidentService`, one :class:`Silences` shared with a real :class:`AlertEngine` —
on real PostgreSQL (a fresh schema per test), served over real HTTP on 127.0.0.1 (aiohttp's TestServer).
No cameras run; the analyzer holds a real SSD-MobileNet backend that nothing feeds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.mqtt_devices import DeviceHub
from alerts.engine import AlertEngine
from alerts.evidence import EvidenceStore
from alerts.grids import GridTree
from alerts.people import Directory
from alerts.service import IncidentService
from alerts.settings import ClassRule, DispatchSection, SilenceConfig
from alerts.silences import Silences
from detectors.analyzer import Analyzer
from detectors.backends import load_backend
from detectors.backends.base import DetectorBackend
from hub.bus import Bus
from hub.config import DemoSection, DeviceConfig, HubConfig, OpenCvDnnBackend
from hub.metrics import Metrics
from hub.state import LiveState
from hub.storage import Database
from hub.view import RuntimeView
from hub.web import create_app
from tests.alerts.loop_support import GRIDS, people, person

STAFF = [
    *people(),
    person("lead2", ["grid_leader"], ["G2"], channels=[{"type": "ws"}], token="lead2-token-0123456789"),
    person("fire", ["department"], [], department="消防", channels=[{"type": "ws"}],
           token="fire-token-0123456789"),
    person("fitter", ["integrator"], [], token="fitter-token-0123456789"),
    person("root", ["admin"], [], token="root-token-0123456789"),
]


@pytest.fixture(scope="module")
def backend() -> Iterator[DetectorBackend]:
    """The detector the runtime's analyzer holds (no camera feeds it here); test modules assign it."""
    model = load_backend(OpenCvDnnBackend())
    yield model
    model.close()


def auth(person_id: str) -> dict[str, str]:
    """The Authorization header of a person in :data:`STAFF` (tokens are ``<id>-token-0123456789``)."""
    return {"Authorization": f"Bearer {person_id}-token-0123456789"}


def hub_config(silences: Sequence[SilenceConfig] = ()) -> HubConfig:
    fire = ClassRule.model_validate({"kinds": ["fire_hazard"], "class": "professional", "department": "消防"})
    doors = [DeviceConfig(id=f"door{n}", name=f"{n}号单元门", kind="door_contact", grid=f"G{n}",
                          topic=f"z2m/door{n}") for n in (1, 2)]
    return HubConfig(
        grids=GRIDS, people=STAFF, silences=list(silences), devices=doors,
        dispatch=DispatchSection(rules=[fire, *DispatchSection().rules]), demo=DemoSection(force_night=False))


@dataclass
class Runtime:
    client: TestClient[Any, Any]
    view: RuntimeView
    engine: AlertEngine
    db: Database
    bus: Bus

    async def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        async with self.db.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall())

    async def count_incidents(self) -> int:
        return int((await self.rows("SELECT count(*) FROM incidents"))[0][0])


@asynccontextmanager
async def runtime(pg_url: str, state_dir: Path, backend: DetectorBackend,
                  silences: Sequence[SilenceConfig] = ()) -> AsyncIterator[Runtime]:
    cfg = hub_config(silences)
    bus, metrics = Bus(), Metrics()
    evidence_dir = state_dir / "evidence"
    evidence_dir.mkdir(exist_ok=True)
    async with Database(pg_url, timescaledb="off", pool_size=8) as db:
        directory = Directory(cfg.people, cfg.grids)
        service = IncidentService(db, directory, cfg.dispatch, bus, mqtt=True)
        shared = Silences(cfg.silences, directory.tree, db)  # as hub.app: one instance, engine and view
        evidence = EvidenceStore(evidence_dir, _no_frame)
        engine = AlertEngine(cfg.alerts, cfg.cameras, cfg.devices, bus, db, evidence, metrics,
                             timezone=cfg.hub.timezone, settle_s=0.0,
                             grids=GridTree(cfg.grids).grid_map(cfg), service=service, silences=shared)
        analyzer = Analyzer(cfg.detect, cfg.cameras, backend, bus, metrics=metrics)
        view = RuntimeView(cfg, bus, metrics, LiveState(cfg.cameras, bus, metrics), db, {}, analyzer,
                           DeviceHub(cfg.devices, bus, None), evidence_dir, {"database": "external"},
                           service=service, silences=shared)
        async with TestClient(TestServer(create_app(view), host="127.0.0.1")) as client:
            yield Runtime(client, view, engine, db, bus)


def _no_frame(camera_id: str) -> None:
    return None

