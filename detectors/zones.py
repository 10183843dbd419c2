"""Intrusion zones: a tracked object whose feet stay inside a polygon long enough.

The polygon comes from config in fractions of the frame and is scaled to pixels
once. The anchor of a box is its bottom centre (where a person stands), so a tall
person passing *in front of* a zone drawn on the ground does not trigger it.

Per track the rule keeps a dwell timer:

* it starts when the anchor is first seen inside;
* absence (anchor outside, or the track missing from an analysed frame) shorter
  than ``grace_s`` does not reset it — tracks flicker and boxes jitter at the edge;
  the absence is measured from the first analysed frame that did not see the track
  inside, so frames skipped by motion gating never count as leaving;
* when the dwell reaches ``zone.min_dwell_s`` the rule fires once for that visit;
* a later visit of the same track fires again only when ``zone.cooldown_s`` has
  passed since its previous hit (a visit that is still going on when the cooldown
  ends fires then).

Only detections whose label is in ``zone.labels`` and that carry a tracker id count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.detections import Detections
from hub.config import ZoneConfig
from hub.events import RuleHit

log = logging.getLogger(__name__)


def points_in_polygon(points: npt.NDArray[np.floating], polygon: npt.NDArray[np.floating]) -> npt.NDArray[
        np.bool_]:
    """Even-odd test of many points against one polygon (vectorised, pixels or any unit)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros(0, bool)
    x = pts[:, 0:1]
    y = pts[:, 1:2]
    x1, y1 = poly[:, 0][None, :], poly[:, 1][None, :]
    x2, y2 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (y1 > y) != (y2 > y)
    dy = np.where(y2 != y1, y2 - y1, 1.0)
    x_at = x1 + (y - y1) * (x2 - x1) / dy
    inside: npt.NDArray[np.bool_] = (np.count_nonzero(crosses & (x < x_at), axis=1) % 2) == 1
    return inside


@dataclass
class _Visit:
    entered: float
    out_since: float | None = None  # first analysed time not seen inside
    fired: bool = False


class ZoneRule:
    """Dwell-time intrusion rule for one zone of one camera."""

    rule_name = "intrusion"

    def __init__(
        self,
        zone: ZoneConfig,
        frame_size: tuple[int, int],
        *,
        camera_id: str = "",
        grace_s: float = 1.0,
    ) -> None:
        self.zone = zone
        self.camera_id = camera_id
        self.frame_size = frame_size
        self.grace_s = grace_s
        w, h = frame_size
        self.polygon = np.asarray(zone.polygon, np.float64) * np.array([w, h], np.float64)
        self._labels = frozenset(zone.labels)
        self._visits: dict[int, _Visit] = {}
        self._last_hit: dict[int, float] = {}

    def contains(self, dets: Detections) -> npt.NDArray[np.bool_]:
        """Which detections have their anchor (bottom centre) inside the zone."""
        return points_in_polygon(dets.bottom_center, self.polygon)

    def update(self, dets: Detections, t: float, *, frame_seq: int = -1) -> list[RuleHit]:
        """Feed one analysed frame's tracked detections at time ``t`` (frame capture time)."""
        hits: list[RuleHit] = []
        if len(dets):
            wanted = np.array([lab in self._labels for lab in dets.labels], bool) & (dets.tracker_id >= 0)
            inside = self.contains(dets) & wanted
        else:
            inside = np.zeros(0, bool)
        seen_inside: set[int] = set()
        for i in np.nonzero(inside)[0]:
            tid = int(dets.tracker_id[i])
            if tid in seen_inside:
                continue
            seen_inside.add(tid)
            visit = self._visits.get(tid)
            if visit is None or (visit.out_since is not None and t - visit.out_since > self.grace_s):
                visit = _Visit(entered=t)
                self._visits[tid] = visit
            visit.out_since = None
            if visit.fired or t - visit.entered < self.zone.min_dwell_s:
                continue
            last = self._last_hit.get(tid)
            if last is not None and t - last < self.zone.cooldown_s:
                continue
            visit.fired = True
            self._last_hit[tid] = t
            hits.append(self._hit(dets, int(i), t, frame_seq))
        for tid, visit in list(self._visits.items()):
            if tid in seen_inside:
                continue
            if visit.out_since is None:
                visit.out_since = t
            elif t - visit.out_since > self.grace_s:
                del self._visits[tid]
        cooldown = self.zone.cooldown_s
        for tid, last in list(self._last_hit.items()):
            if t - last >= cooldown and tid not in self._visits:
                del self._last_hit[tid]
        return hits

    @property
    def active_tracks(self) -> int:
        """Tracks with a dwell timer running (inside or within the grace period)."""
        return len(self._visits)

    def _hit(self, dets: Detections, i: int, t: float, frame_seq: int) -> RuleHit:
        box = tuple(float(v) for v in dets.xyxy[i])
        return RuleHit(
            camera_id=self.camera_id,
            rule=self.rule_name,
            zone=self.zone.id,
            track_id=int(dets.tracker_id[i]),
            label=dets.labels[i],
            confidence=float(dets.confidence[i]),
            box=(box[0], box[1], box[2], box[3]),
            captured_at=t,
            frame_seq=frame_seq,
        )
