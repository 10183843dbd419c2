"""In-memory index of recently active incidents: dedup and IoT+video correlation.

* Dedup: a trigger with the same key ``(source type, source id, rule/kind, zone)`` as an
  incident's trigger, within ``quiet_s`` of that incident's last trigger, updates it.
* Grouping: a trigger of the same kind in the same grid within ``dispatch.group_window_s`` of an
  incident's last trigger joins it (two cameras of one yard, two doors of one building).
* Correlation: a door trigger (forced / opened at night) on a device and a person rule hit
  on one of the device's linked cameras, within ``window_s`` of each other (either order),
  form one incident: whichever comes first opens it, the other joins it.

Times are event times (``SourceEvent.at``, ``RuleHit.captured_at``), not arrival times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Key = tuple[str, str, str, str | None]  # (source type, source id, rule or kind, zone)


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


@dataclass
class Trigger:
    """One alert: a rule hit or a source event that matters."""

    id: str
    kind: str
    key: Key
    at: float
    grid: str | None
    where: str
    source: dict[str, Any]
    snapshot_camera: str | None = None
    box: tuple[float, float, float, float] | None = None
    captured_at: float | None = None
    door_device: str | None = None  # set for door triggers that correlate
    person_camera: str | None = None  # set for person hits that correlate
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class OpenIncident:
    id: str
    kind: str
    cls: str
    opened_at: float
    last_seen: float
    keys: set[Key] = field(default_factory=set)
    door_times: dict[str, float] = field(default_factory=dict)  # device id -> latest door trigger
    person_times: dict[str, float] = field(default_factory=dict)  # camera id -> latest person hit
    sources: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    count: int = 1
    published: bool = False
    captured_at: float | None = None  # frame capture of the first rule hit (latency metric)
    api: dict[str, Any] = field(default_factory=dict)  # latest stored API dict
    grid: str | None = None


class IncidentIndex:
    def __init__(self, quiet_s: float, window_s: float, keep_s: float = 0.0) -> None:
        self.quiet_s = quiet_s
        self.window_s = window_s
        self.keep_s = max(quiet_s, window_s, keep_s)  # other windows that look back (grouping, inhibition)
        self._open: dict[str, OpenIncident] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(self, inc: OpenIncident) -> None:
        self._open[inc.id] = inc

    def get(self, incident_id: str) -> OpenIncident | None:
        return self._open.get(incident_id)

    def expire(self, now: float) -> None:
        for inc_id in [i for i, inc in self._open.items() if now - inc.last_seen > self.keep_s]:
            del self._open[inc_id]

    def recent(self) -> list[OpenIncident]:
        """Active incidents, most recently triggered first."""
        return sorted(self._open.values(), key=lambda i: -i.last_seen)

    def duplicate_of(self, key: Key, at: float) -> OpenIncident | None:
        best: OpenIncident | None = None
        for inc in self._open.values():
            if key in inc.keys and abs(at - inc.last_seen) <= self.quiet_s and (
                    best is None or inc.last_seen > best.last_seen):
                best = inc
        return best

    def group_of(self, grid: str | None, kind: str, at: float, window_s: float) -> OpenIncident | None:
        """Grouping: the latest incident of ``kind`` in ``grid`` active within ``window_s`` of ``at``."""
        if grid is None or window_s <= 0:
            return None
        best: OpenIncident | None = None
        for inc in self._open.values():
            if inc.grid == grid and inc.kind == kind and abs(at - inc.last_seen) <= window_s and (
                    best is None or inc.last_seen > best.last_seen):
                best = inc
        return best

    def door_incident_for_person(self, devices: list[str], at: float) -> OpenIncident | None:
        """An incident with a door trigger on one of ``devices`` within the window of ``at``."""
        for inc in self.recent():
            for dev in devices:
                t = inc.door_times.get(dev)
                if t is not None and abs(at - t) <= self.window_s:
                    return inc
        return None

    def person_incident_for_door(self, cameras: list[str], at: float) -> OpenIncident | None:
        """An incident with a person hit on one of ``cameras`` within the window of ``at``."""
        for inc in self.recent():
            for cam in cameras:
                t = inc.person_times.get(cam)
                if t is not None and abs(at - t) <= self.window_s:
                    return inc
        return None
