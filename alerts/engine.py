"""Alert engine: rule hits and source events become alerts, alerts fuse into incidents.

Subscribes to ``rule_hit`` and ``source_event``. Every trigger is stored (events, rule
hits, alerts); triggers that matter open or update an incident:

* dedup — the same (camera/device, rule/kind, zone) within ``incident_quiet_s`` updates the
  open incident (count, last_seen, new snapshot) instead of opening another;
* correlation — a door forced / opened at night on a device and a person hit on one of its
  linked cameras within ``correlation_window_s`` form ONE incident (see
  :mod:`alerts.correlation`), classed per :mod:`alerts.classification`.

New incidents are stored (with a ``received`` history row) and published on ``incident``
as the API dict. A new incident that could still be joined by its counterpart (door with
linked cameras, person on a camera linked to a door) is published after ``settle_s`` so
near-simultaneous door + person become one message; later changes go out on
``incident_update`` (same dict shape) so delivery channels notify once per incident.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from alerts.classification import (
    DEVICE_ALERTS,
    DOOR_TRIGGERS,
    classify,
    department,
    is_night,
    stronger,
    title,
)
from alerts.correlation import IncidentIndex, OpenIncident, Trigger, iso
from alerts.evidence import EvidenceStore
from alerts.inhibit import CAMERA_OFFLINE, UPLINK_DOWN, Inhibition, uplink_key, uplink_title
from alerts.people import Directory
from alerts.ptz import PresetMover
from alerts.service import IncidentService
from alerts.settings import DispatchSection
from alerts.silences import Silences
from hub.bus import (
    TOPIC_ALERT,
    TOPIC_INCIDENT,
    TOPIC_INCIDENT_UPDATE,
    TOPIC_RULE_HIT,
    TOPIC_SOURCE_EVENT,
    Bus,
)
from hub.config import AlertsSection, CameraBase, DeviceConfig
from hub.events import RuleHit, SourceEvent, new_id
from hub.metrics import Metrics
from hub.storage import Database

log = logging.getLogger(__name__)

MAX_EVIDENCE = 10


class AlertEngine:
    def __init__(  # noqa: PLR0917 - positional order is the documented wiring contract
        self,
        cfg: AlertsSection,
        cameras: list[CameraBase],
        devices: list[DeviceConfig],
        bus: Bus,
        db: Database,
        evidence: EvidenceStore,
        metrics: Metrics | None = None,
        force_night: bool = False,
        *,
        timezone: str | None = None,
        settle_s: float = 1.0,
        grids: Mapping[str, str] | None = None,
        service: IncidentService | None = None,
        dispatch: DispatchSection | None = None,
        silences: Silences | None = None,
        ptz: PresetMover | None = None,
    ) -> None:
        self.silences = silences
        self.ptz = ptz
        self.cfg = cfg
        self.dispatch = dispatch or (service.cfg if service is not None else DispatchSection())
        # every transition goes through the service (lifecycle, SLA timers, notices)
        self.service = service or IncidentService(db, Directory([], []), self.dispatch, bus, mqtt=False)
        # "camera:<id>", "zone:<camera>/<zone>", "device:<id>" -> grid code (explicit or by location;
        # alerts.grids.GridTree.grid_map); without it the configs' own grid fields are used
        self.grids = dict(grids or {})
        self.bus = bus
        self.db = db
        self.evidence = evidence
        self.metrics = metrics
        self.force_night = force_night
        self.tz = ZoneInfo(timezone) if timezone else None
        self.settle_s = settle_s
        self.cameras = {c.id: c for c in cameras}
        self.devices = {d.id: d for d in devices}
        self.doors_for_camera: dict[str, list[str]] = {}
        self.source_links: dict[str, list[str]] = {}  # door -> cameras, learned from sources' events
        for dev in devices:
            for cam in dev.cameras:
                self.doors_for_camera.setdefault(cam, []).append(dev.id)
        self.inhibition = Inhibition(cameras, self.dispatch.inhibit_window_s)
        self.index = IncidentIndex(cfg.incident_quiet_s, cfg.correlation_window_s,
                                   keep_s=max(self.dispatch.group_window_s, self.dispatch.inhibit_window_s))
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"rule_hits": 0, "source_events": 0, "alerts": 0, "incidents": 0, "updates": 0}

    async def run(self) -> None:
        async with self.bus.subscription(TOPIC_RULE_HIT, TOPIC_SOURCE_EVENT) as sub:
            try:
                while True:
                    topic, msg = await sub.get()
                    try:
                        if topic == TOPIC_RULE_HIT and isinstance(msg, RuleHit):
                            await self.handle_rule_hit(msg)
                        elif topic == TOPIC_SOURCE_EVENT and isinstance(msg, SourceEvent):
                            await self.handle_source_event(msg)
                    except Exception:  # one bad message or a DB hiccup must not stop the engine
                        log.exception("alert engine failed on %s message", topic)
            finally:
                for task in list(self._tasks):
                    task.cancel()

    def is_night(self, at: float) -> bool:
        return self.force_night or is_night(at, self.cfg.night, self.tz)

    # -- inputs --------------------------------------------------------------------------------

    async def handle_rule_hit(self, hit: RuleHit) -> None:
        self.stats["rule_hits"] += 1
        await self.db.insert_rule_hit(hit)
        cam = self.cameras.get(hit.camera_id)
        person = hit.label == "person" and bool(self.doors_for_camera.get(hit.camera_id))
        where = (cam.name or cam.id) if cam else hit.camera_id
        at = hit.captured_at
        source = {"type": "camera", "id": hit.camera_id, "name": where, "rule": hit.rule, "zone": hit.zone,
                  "label": hit.label, "confidence": round(hit.confidence, 3), "at": iso(at)}
        await self._trigger(Trigger(
            id=hit.id, kind=hit.rule, key=("camera", hit.camera_id, hit.rule, hit.zone), at=at,
            grid=self._grid_of_hit(hit, cam), where=where, source=source,
            snapshot_camera=hit.camera_id, box=hit.box, captured_at=hit.captured_at,
            person_camera=hit.camera_id if person else None, data=hit.to_json()))

    async def handle_source_event(self, ev: SourceEvent) -> None:
        self.stats["source_events"] += 1
        await self.db.insert_event(ev)
        dev = self.devices.get(ev.source_id)
        if dev is None:
            self._learn_links(ev)
        kind = str(ev.kind)
        if kind == "device_offline" and self.inhibition.is_uplink(ev.source_id):
            kind = UPLINK_DOWN  # the NVR or village gateway its cameras' video goes through
        elif kind not in DEVICE_ALERTS:
            return
        if kind == "door_opened" and not (self.cfg.door_open_at_night and self.is_night(ev.at)):
            return
        # a camera's own event (ONVIF analytics) shows that camera; a door or zone shows its linked ones
        linked = [ev.source_id] if ev.source_id in self.cameras else self._door_cameras(ev.source_id)
        cam = self.cameras.get(ev.source_id)
        if dev is not None:
            where = dev.name or dev.id
        else:
            where = (cam.name or cam.id) if cam is not None else str(ev.data.get("name") or ev.source_id)
        source = {"type": "device", "id": ev.source_id, "name": where, "kind": kind, "at": iso(ev.at)}
        await self._trigger(Trigger(
            id=ev.id, kind=kind, at=ev.at,
            key=uplink_key(ev.source_id) if kind == UPLINK_DOWN else ("device", ev.source_id, kind, None),
            grid=ev.grid or self.grids.get(f"device:{ev.source_id}") or ((dev.grid or None) if dev else None),
            where=where, source=source,
            snapshot_camera=linked[0] if linked else None,
            door_device=ev.source_id if kind in DOOR_TRIGGERS and linked else None, data=ev.to_json()))

    async def handle_camera_offline(self, camera_id: str, since: float, reason: str) -> None:
        """A camera's stream stayed down (:class:`alerts.camera_health.CameraWatch`)."""
        cam = self.cameras.get(camera_id)
        where = (cam.name or cam.id) if cam else camera_id
        source = {"type": "camera", "id": camera_id, "name": where, "kind": CAMERA_OFFLINE,
                  "reason": reason, "at": iso(since)}
        if cam is not None and cam.uplink:
            source["uplink"] = cam.uplink
        await self._trigger(Trigger(
            id=new_id(), kind=CAMERA_OFFLINE, key=("camera", camera_id, CAMERA_OFFLINE, None), at=since,
            grid=self.grids.get(f"camera:{camera_id}") or ((cam.grid or None) if cam else None), where=where,
            source=source, data={"camera_id": camera_id, "reason": reason}))

    async def handle_camera_online(self, camera_id: str, at: float) -> None:
        """The camera is back: say so on its open offline incident (people close it)."""
        inc = self.index.duplicate_of(("camera", camera_id, CAMERA_OFFLINE, None), at)
        if inc is not None:
            await self.db.add_history(inc.id, inc.api.get("state", "dispatched"), action="recover",
                                      note=f"camera {camera_id} back online")

    def _grid_of_hit(self, hit: RuleHit, cam: CameraBase | None) -> str | None:
        """The zone's grid, else the camera's (explicit or found from its location)."""
        if hit.zone is not None and (grid := self.grids.get(f"zone:{hit.camera_id}/{hit.zone}")):
            return grid
        return self.grids.get(f"camera:{hit.camera_id}") or ((cam.grid or None) if cam else None)

    def _door_cameras(self, source_id: str) -> list[str]:
        dev = self.devices.get(source_id)
        return list(dev.cameras) if dev is not None else self.source_links.get(source_id, [])

    def _learn_links(self, ev: SourceEvent) -> None:
        """A door from a ``sources:`` adapter names the cameras that see it in its events' data."""
        cameras = ev.data.get("cameras")
        if not isinstance(cameras, list | tuple):
            return
        links = [str(c) for c in cameras if str(c) in self.cameras]
        if links == self.source_links.get(ev.source_id):
            return
        self.source_links[ev.source_id] = links
        for doors in self.doors_for_camera.values():
            if ev.source_id in doors:
                doors.remove(ev.source_id)
        for cam in links:
            self.doors_for_camera.setdefault(cam, []).append(ev.source_id)

    # -- fusion --------------------------------------------------------------------------------

    async def _trigger(self, trig: Trigger) -> None:
        self.stats["alerts"] += 1
        if self.metrics is not None:
            self.metrics.alerts.labels(kind=trig.kind).inc()
        self.index.expire(trig.at)
        night = self.is_night(trig.at)
        url = None
        if trig.snapshot_camera is not None:
            url = await self.evidence.snapshot(trig.snapshot_camera, trig.box)
        evidence = [{"kind": "snapshot", "url": url, "camera_id": trig.snapshot_camera, "at": iso(trig.at)}
                    ] if url else []

        inc = self.index.duplicate_of(trig.key, trig.at)
        correlated = False
        if inc is None and self.silences is not None and (silence := await self.silences.match(
                grid=trig.grid, source=trig.source["id"], kind=trig.kind, at=trig.at)) is not None:
            await self._silenced(trig, silence)
            return
        if inc is None and trig.door_device is not None:
            inc = self.index.person_incident_for_door(self._door_cameras(trig.door_device), trig.at)
            correlated = inc is not None
        elif inc is None and trig.person_camera is not None:
            inc = self.index.door_incident_for_person(self.doors_for_camera[trig.person_camera], trig.at)
            correlated = inc is not None

        rename: tuple[str, str] | None = None
        if inc is None and (uplink := self.inhibition.uplink_for(trig)) is not None:
            inc, rename = self._fold_uplink(trig, uplink)
        if inc is None and not correlated:
            inc = self.index.group_of(trig.grid, trig.kind, trig.at, self.dispatch.group_window_s)
        if inc is None:
            inc = await self._open(trig, night, evidence)
        else:
            await self._join(inc, trig, night, evidence, correlated, rename=rename)
        self.bus.publish(TOPIC_ALERT, {"id": trig.id, "kind": trig.kind, "incident_id": inc.id,
                                       "source": trig.source, "at": iso(trig.at)})
        await self.db.insert_alert(id=trig.id, at=trig.at, kind=trig.kind, source_type=trig.source["type"],
                                   source_id=trig.source["id"], rule=trig.key[2], zone=trig.key[3],
                                   grid=trig.grid, incident_id=inc.id, data=trig.data)

    def _fold_uplink(self, trig: Trigger, uplink: str) -> tuple[OpenIncident | None, tuple[str, str] | None]:
        """Inhibition: the outage's incident this trigger joins, and its new kind and title."""
        inc = self.inhibition.fold(self.index, uplink, trig.at)
        if inc is None:
            return None, None
        inc.keys.add(uplink_key(uplink))
        cameras = self.inhibition.cameras_in(inc)
        if trig.kind == CAMERA_OFFLINE and trig.key not in inc.keys:
            cameras += 1
        return inc, (UPLINK_DOWN, uplink_title(uplink, cameras))

    async def _silenced(self, trig: Trigger, silence: dict[str, Any]) -> None:
        """Stored as an alert (with the silence that held it), no incident."""
        self.stats["silenced"] = self.stats.get("silenced", 0) + 1
        data = {**trig.data, "silenced": {"id": silence["id"], "reason": silence["reason"]}}
        self.bus.publish(TOPIC_ALERT, {"id": trig.id, "kind": trig.kind, "incident_id": None,
                                       "source": trig.source, "at": iso(trig.at), "silenced": True})
        await self.db.insert_alert(id=trig.id, at=trig.at, kind=trig.kind, source_type=trig.source["type"],
                                   source_id=trig.source["id"], rule=trig.key[2], zone=trig.key[3],
                                   grid=trig.grid, incident_id=None, data=data)
        log.info("alert %s on %s silenced (%s)", trig.kind, trig.source["id"],
                 silence["reason"] or silence["id"])

    async def _open(self, trig: Trigger, night: bool, evidence: list[dict[str, Any]]) -> OpenIncident:
        rules = self.dispatch.rules
        inc = OpenIncident(id=new_id(), kind=trig.kind, cls=classify(trig.kind, night=night, rules=rules),
                           opened_at=trig.at, last_seen=trig.at, keys={trig.key},
                           sources=[trig.source], evidence=evidence, captured_at=trig.captured_at,
                           grid=trig.grid)
        self._mark_correlatable(inc, trig)
        opened = await self.service.open(
            id=inc.id, kind=inc.kind, cls=inc.cls, grid=trig.grid, title=title(trig.kind, trig.where),
            department=department(trig.kind, rules), opened_at=trig.at, sources=inc.sources,
            evidence=inc.evidence, last_seen=trig.at, dedup_keys=[trig.key])
        assert opened is not None  # no idempotency key: always new
        opened.pop("history", None)
        inc.api = opened
        self.index.add(inc)
        self.stats["incidents"] += 1
        if self.ptz is not None and trig.source["type"] == "device" and self.ptz.wants(trig.source["id"]):
            self.ptz.move_for(trig.source["id"], inc.id)  # no camera has seen it yet: look at it
        if self.metrics is not None:
            self.metrics.incidents.labels(kind=inc.kind).inc()
        if (trig.door_device or trig.person_camera) and self.settle_s > 0:
            task = asyncio.create_task(self._publish_later(inc), name=f"settle-{inc.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._publish(inc)
        log.info("incident %s opened: %s (%s)", inc.id, inc.api["title"], inc.cls)
        return inc

    async def _join(self, inc: OpenIncident, trig: Trigger, night: bool, evidence: list[dict[str, Any]],
                    correlated: bool, *, rename: tuple[str, str] | None = None) -> None:
        inc.count += 1
        inc.last_seen = max(inc.last_seen, trig.at)
        inc.evidence.extend(evidence)
        if len(inc.evidence) > MAX_EVIDENCE:
            inc.evidence = [inc.evidence[0], *inc.evidence[-(MAX_EVIDENCE - 1):]]
        if trig.key not in inc.keys:
            inc.keys.add(trig.key)
            inc.sources.append(trig.source)
        self._mark_correlatable(inc, trig)
        if inc.captured_at is None:
            inc.captured_at = trig.captured_at
        fields: dict[str, Any] = {"count": inc.count, "last_seen": inc.last_seen, "sources": inc.sources,
                                  "evidence": inc.evidence}
        was = inc.cls
        reasons: list[str] = []
        rules = self.dispatch.rules
        if rename is not None:  # folded under its uplink (alerts.inhibit)
            inc.kind = rename[0]
            fields.update(kind=inc.kind, title=rename[1],
                          department=department(inc.kind, rules) or inc.api.get("department", ""))
            inc.cls = stronger(inc.cls, classify(inc.kind, night=night, rules=rules))
        if correlated:
            door_kind = trig.kind if trig.door_device else inc.kind
            door_name = trig.where if trig.door_device else str(inc.sources[0].get("name", ""))
            cand = classify(door_kind, night=night, correlated=True, rules=rules)
            # A later, milder door event (the forced door closing and opening again) must not
            # rename an incident a stronger one already named.
            renames = (trig.door_device is None or inc.kind not in DOOR_TRIGGERS
                       or stronger(inc.cls, cand) != inc.cls)
            inc.cls = stronger(inc.cls, cand)
            reasons.append(f"fused: {trig.kind} on {trig.source['id']}")
            if renames:
                inc.kind = door_kind
                fields.update(kind=inc.kind, title=title(door_kind, door_name) + " · 有人 person seen",
                              department=department(door_kind, rules) or inc.api.get("department", ""))
        repeat = self.dispatch.repeat
        if repeat is not None and inc.count >= repeat.count and stronger(inc.cls, repeat.to) != inc.cls:
            inc.cls = stronger(inc.cls, repeat.to)
            reasons.append(f"repeated {inc.count} times")
        inc.api = await self.db.update_incident(inc.id, **fields)
        if correlated:
            await self.db.add_history(inc.id, inc.api["state"], action="correlate",
                                      note=f"joined by {trig.kind} on {trig.source['id']}")
            log.info("incident %s: %s on %s correlated (%s)", inc.id, trig.kind, trig.source["id"], inc.cls)
        if inc.cls != was:
            inc.api = await self.service.upgrade(inc.id, inc.cls, "; ".join(reasons))
            inc.api.pop("history", None)
        self.stats["updates"] += 1
        if inc.published:
            self.bus.publish(TOPIC_INCIDENT_UPDATE, inc.api)
            self._observe_latency(trig.captured_at)

    @staticmethod
    def _mark_correlatable(inc: OpenIncident, trig: Trigger) -> None:
        if trig.door_device is not None:
            inc.door_times[trig.door_device] = trig.at
        if trig.person_camera is not None:
            inc.person_times[trig.person_camera] = trig.at

    # -- output --------------------------------------------------------------------------------

    async def _publish_later(self, inc: OpenIncident) -> None:
        await asyncio.sleep(self.settle_s)
        self._publish(inc)

    def _publish(self, inc: OpenIncident) -> None:
        inc.published = True
        self.bus.publish(TOPIC_INCIDENT, inc.api)
        self._observe_latency(inc.captured_at)

    def _observe_latency(self, captured_at: float | None) -> None:
        if self.metrics is not None and captured_at is not None:
            self.metrics.latency.observe(max(0.0, time.time() - captured_at))
