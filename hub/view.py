"""The runtime's implementation of :class:`hub.web.view.HubView` (what the web app reads)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.bus import Bus
from hub.config import HubConfig
from hub.metrics import Metrics
from hub.state import LiveState

if TYPE_CHECKING:
    from adapters.mqtt_devices import DeviceHub
    from alerts.people import Caller
    from alerts.reports import Report
    from alerts.service import IncidentService
    from alerts.silences import Silences
    from detectors.analyzer import Analyzer
    from detectors.detections import Detections
    from hub.sources import CameraFeed, SourceSupervisor
    from hub.storage import Database
    from streams.frame import Frame


#: Component states that count as healthy ("embedded"/"external" say where a service runs;
#: "postgresql"/"timescaledb" say which storage mode is active — both are supported modes).
HEALTHY = frozenset({"ok", "embedded", "external", "postgresql", "partitioned", "timescaledb"})


class RuntimeView:
    def __init__(  # noqa: PLR0917 - one constructor wiring the runtime's parts
        self,
        cfg: HubConfig,
        bus: Bus,
        metrics: Metrics,
        state: LiveState,
        db: Database,
        readers: Mapping[str, CameraFeed],
        analyzer: Analyzer,
        device_hub: DeviceHub,
        evidence_dir: Path,
        components: dict[str, str],
        source_devices: dict[str, dict[str, Any]] | None = None,
        supervisors: Mapping[str, SourceSupervisor] | None = None,
        *,
        service: IncidentService | None = None,
        silences: Silences | None = None,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.metrics = metrics
        self.state = state
        self.db = db
        self.readers = readers
        self.analyzer = analyzer
        self.device_hub = device_hub
        self.evidence_dir = evidence_dir
        self.components = components
        self.source_devices = source_devices if source_devices is not None else {}
        self.supervisors = supervisors or {}
        from alerts.people import Directory
        from alerts.service import IncidentService

        self.directory = service.directory if service is not None else Directory(cfg.people, cfg.grids)
        self.service = service or IncidentService(db, self.directory, cfg.dispatch, bus, mqtt=False)
        from alerts.grids import GridTree
        from alerts.silence_admin import SilenceAdmin
        from alerts.silences import Silences

        placed = GridTree(cfg.grids).grid_map(cfg)  # "camera:<id>" / "device:<id>" -> grid
        source_grids = {key.partition(":")[2]: grid for key, grid in placed.items()
                        if key.startswith(("camera:", "device:"))}
        # the alert engine's instance (hub.app): invalidated here when a silence is added or lifted
        self.silence_admin = SilenceAdmin(silences or Silences(cfg.silences, self.directory.tree, db),
                                          self.directory, source_grids)

    def health(self) -> dict[str, Any]:
        comps: dict[str, Any] = dict(self.components)
        online = sum(1 for c in self.state.cameras.values() if c.online)
        enabled = sum(1 for c in self.state.cameras.values() if c.cfg.enabled)
        comps["cameras"] = {"online": online, "total": enabled}
        degraded = any(v not in HEALTHY for v in self.components.values())
        degraded = degraded or online < enabled
        return {"status": "degraded" if degraded else "ok", "components": comps}

    def cameras(self) -> list[dict[str, Any]]:
        out = []
        for cam_id, cam in self.state.cameras.items():
            reader = self.readers.get(cam_id)
            stats = dataclasses.asdict(reader.stats) if reader is not None else None
            row = cam.to_json(stats)
            row["kind"] = cam.cfg.kind
            if reader is not None:
                row["source_state"] = reader.supervisor.components.get(reader.supervisor.key, "starting")
                row["capabilities"] = sorted(str(c) for c in type(reader.adapter).capabilities)
            out.append(row)
        return out

    def sources(self) -> list[dict[str, Any]]:
        rows = [feed.diagnostics() for feed in self.readers.values()]
        return rows + [sup.diagnostics() for sup in self.supervisors.values()]

    def devices(self) -> list[dict[str, Any]]:
        return self.device_hub.status() + list(self.source_devices.values())

    def latest_frame(self, camera_id: str) -> tuple[Frame, Detections | None] | None:
        result = self.analyzer.last_result(camera_id)
        reader = self.readers.get(camera_id)
        frame = reader.latest() if reader is not None else None
        if result is not None and (frame is None or frame.seq - result.frame.seq <= 2):
            return result.frame, result.detections
        if frame is None:
            return None
        return frame, result.detections if result is not None else None

    async def list_incidents(
        self, state: str | None, grid: str | None, cls: str | None, since: datetime | None, limit: int,
        *, caller: Caller | None = None,
    ) -> list[dict[str, Any]]:
        return await self.db.list_incidents(
            state=state, grid=self.directory.expand(grid) if grid else None, cls=cls, since=since,
            limit=limit, scope=self.directory.scope(caller) if caller is not None else None)

    async def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        return await self.db.get_incident(incident_id)

    def caller(self, token: str | None) -> Caller | None:
        from alerts.people import CONTROL_ROOM

        if token is None:
            return CONTROL_ROOM if self.cfg.http.anonymous == "operator" else None
        return self.directory.caller_for_token(token)

    def holds_token(self, person_id: str) -> bool:
        person = self.directory.by_id.get(person_id)
        return person is not None and person.token is not None

    def can_see(self, caller: Caller, incident: dict[str, Any]) -> bool:
        return self.directory.can_see(caller, incident)

    async def incident_action(self, incident_id: str, action: str, caller: Caller, *, note: str = "",
                              satisfaction: str | None = None,
                              attachments: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        return await self.service.act(incident_id, action, caller, note=note, satisfaction=satisfaction,
                                      attachments=attachments)

    async def dispatch_jobs(self, state: str | None, incident_id: str | None,
                            limit: int) -> list[dict[str, Any]]:
        from hub.storage import dispatch

        async with self.db.pool.connection() as conn:
            return await dispatch.list_jobs(conn, state=state, incident_id=incident_id, limit=limit)

    async def dispatch_stats(self) -> dict[str, int]:
        from hub.storage import dispatch

        async with self.db.pool.connection() as conn:
            return await dispatch.stats(conn)

    async def kpis(self, since: datetime | None, until: datetime | None,
                   grid: str | None) -> list[dict[str, Any]]:
        from datetime import UTC, timedelta

        from alerts.kpis import daily_kpis, local_day

        now = datetime.now(UTC)
        start, end = local_day(self.cfg.hub.timezone, now)
        async with self.db.pool.connection() as conn:
            return await daily_kpis(conn, since=since or start - timedelta(days=6), until=until or end,
                                    tz=self.cfg.hub.timezone, grid=grid)

    async def alert_quality(self, since: datetime | None, until: datetime | None,
                            caller: Caller) -> list[dict[str, Any]]:
        from datetime import UTC, timedelta

        from alerts.alert_quality import alert_quality

        now = datetime.now(UTC)
        async with self.db.pool.connection() as conn:
            return await alert_quality(conn, since=since or now - timedelta(days=30), until=until or now,
                                       grids=self.directory.scope(caller).grids)

    async def retry_dead(self, job_id: int) -> bool:
        from hub.storage import dispatch

        async with self.db.pool.connection() as conn:
            done = await dispatch.requeue_dead(conn, job_id)
        if done and self.service.on_queued is not None:
            self.service.on_queued()
        return done

    async def report_incident(self, caller: Caller, report: Report) -> tuple[dict[str, Any], bool]:
        from zoneinfo import ZoneInfo

        from alerts.classification import is_night
        from alerts.reports import open_report

        # night as the alert engine sees it, so a report and a sensor alert of one kind get one class
        night = self.cfg.demo.force_night or is_night(self.service.clock(), self.cfg.alerts.night,
                                                      ZoneInfo(self.cfg.hub.timezone))
        opened, created = await open_report(self.service, caller, report, night=night)
        if created:
            self.metrics.incidents.labels(kind=report.kind).inc()
        return opened, created

    async def silences(self, caller: Caller) -> list[dict[str, Any]]:
        from datetime import UTC

        return await self.silence_admin.current(caller, datetime.now(UTC))

    async def add_silence(self, caller: Caller, *, grid: str | None, source: str | None, kinds: Sequence[str],
                          starts: datetime | None, ends: datetime, reason: str) -> dict[str, Any]:
        return await self.silence_admin.add(caller, grid=grid, source=source, kinds=kinds, starts=starts,
                                            ends=ends, reason=reason)

    async def delete_silence(self, caller: Caller, silence_id: int) -> bool:
        return await self.silence_admin.delete(caller, silence_id)
