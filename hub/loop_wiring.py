"""Wiring of the closed loop into a running hub: incident service, durable delivery, alert engine,
camera outages, PTZ presets, silences, SLA timers, KPI gauges and the demo's simulated patrol.

:class:`ClosedLoop` is built once per :meth:`hub.app.Hub.run`; ``start`` makes the service and the
delivery workers on the configured queue, ``alert_tasks`` adds the engine and its helpers to the
hub's named tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, MutableMapping
from pathlib import Path
from typing import Any

from alerts.evidence import EvidenceStore
from alerts.service import IncidentService
from alerts.silences import Silences
from hub.bus import Bus
from hub.config import CameraBase, HubConfig
from hub.metrics import Metrics
from hub.storage import Database

log = logging.getLogger(__name__)

Tasks = dict[str, Callable[[], Coroutine[Any, Any, Any]]]


def node_id(state_dir: Path) -> str:
    """This hub's stable node id (kept in the state dir): names the delivery leases it holds."""
    path = state_dir / "node-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        import secrets
        import socket

        node = f"{socket.gethostname()}-{secrets.token_hex(3)}"
        path.write_text(node + "\n")
        return node


async def run_timers(service: IncidentService, poll_s: float) -> None:
    """Fire due SLA timers (they live in the database: what fell due while the hub was down fires now)."""
    while True:
        await service.fire_due()
        due_in = await service.next_due_in()
        await asyncio.sleep(poll_s if due_in is None else min(poll_s, max(0.05, due_in)))


class ClosedLoop:
    def __init__(self, cfg: HubConfig, bus: Bus, metrics: Metrics, db: Database,
                 components: MutableMapping[str, str]) -> None:
        self.cfg = cfg
        self.bus = bus
        self.metrics = metrics
        self.db = db
        self.components = components
        self.service: IncidentService | None = None
        self.dispatcher: Any = None

    def start(self, mqtt: Any, state_dir: Path) -> IncidentService:
        """The incident service and the delivery workers on the configured durable queue."""
        from alerts.channels.mqtt import MqttChannel
        from alerts.channels.ws import WsChannel
        from alerts.dispatcher import ChannelSet, Dispatcher
        from alerts.people import Directory

        cfg, db = self.cfg.dispatch, self.db
        node = node_id(state_dir)
        queue: Any
        if cfg.backend == "nats":
            from alerts.queue_nats import NatsQueue

            queue = NatsQueue(db.pool, node, url=cfg.nats_url, lease_s=cfg.lease_s)
        else:
            from alerts.queue import PgQueue

            queue = PgQueue(db.pool, node, lease_s=cfg.lease_s)
        self.components["dispatch"] = "ok"
        log.info("dispatch queue: %s (node %s)", cfg.backend, node)
        channels = ChannelSet(self.cfg.people, ws=WsChannel(self.bus),
                              mqtt=MqttChannel(mqtt, self.cfg.mqtt.topic_prefix))

        async def latest(incident_id: str) -> dict[str, Any] | None:
            got = await db.get_incident(incident_id)
            if got is not None:
                got.pop("history", None)
            return got

        dispatcher = self.dispatcher = Dispatcher(queue, channels, cfg, self.metrics, refresh=latest)
        wake = getattr(queue, "wake", None)

        def queued() -> None:
            dispatcher.wake()
            if wake is not None:
                wake()

        self.service = IncidentService(db, Directory(self.cfg.people, self.cfg.grids), cfg, self.bus,
                                       settle_s=1.0, on_queued=queued)
        return self.service

    def alert_tasks(self, cameras: list[CameraBase], feeds: dict[str, Any], evidence: EvidenceStore,
                    tasks: Tasks) -> Silences:
        """Add the alert engine, camera outages, delivery, SLA timers and KPI gauges to ``tasks``;
        returns the silences the engine and the API share."""
        from alerts.camera_health import CameraWatch
        from alerts.engine import AlertEngine
        from alerts.grids import GridTree
        from alerts.kpis import KpiGauges
        from alerts.ptz import PresetMover, ptz_command

        assert self.service is not None, "start() first"
        service, cfg, db = self.service, self.cfg, self.db
        silences = Silences(cfg.silences, service.directory.tree, db)
        engine = AlertEngine(cfg.alerts, cameras, cfg.devices, self.bus, db, evidence, metrics=self.metrics,
                             force_night=cfg.demo.force_night, timezone=cfg.hub.timezone,
                             grids=GridTree(cfg.grids).grid_map(cfg), service=service, silences=silences,
                             ptz=PresetMover(cfg.devices, ptz_command(feeds), db))
        tasks["alerts"] = engine.run
        if cfg.alerts.camera_offline_after_s > 0:
            tasks["camera-watch"] = CameraWatch(
                cameras, self.bus, after_s=cfg.alerts.camera_offline_after_s,
                online=lambda cid: cid in feeds and bool(feeds[cid].online),
                on_offline=engine.handle_camera_offline, on_online=engine.handle_camera_online).run
        tasks["dispatcher"] = self.dispatcher.run
        tasks["sla-timers"] = lambda: run_timers(service, cfg.dispatch.timer_poll_s)
        gauges = KpiGauges(self.metrics, db.pool, tz=cfg.hub.timezone, grid_codes=[g.code for g in cfg.grids])
        tasks["kpi-gauges"] = lambda: gauges.run(30.0)
        return silences

    def demo_patrol(self, http_url: str) -> Callable[[], Coroutine[Any, Any, Any]] | None:
        """``demo.patrol``: a simulated patrol member (and the control room) working through the API."""
        if not self.cfg.demo.patrol:
            return None
        from hub.demo_patrol import DemoPatrol

        def token(role: str) -> str | None:
            person = next((p for p in self.cfg.people if role in p.roles and p.token is not None), None)
            return person.token.get_secret_value() if person is not None and person.token else None

        patrol = token("patrol")
        if patrol is None:
            log.warning("demo.patrol: no person with role patrol and a token; the patrol is not simulated")
            return None
        return DemoPatrol(http_url, patrol, token("operator")).run
