"""Ground truth of a generated scene: per-frame person boxes with track ids, zone intervals.

Written beside each clip as ``<clip>.json`` so tests and benchmarks can compute expected
intrusion alerts and the precision/recall of detectors and rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRUTH_VERSION = 1


def point_in_polygon(x: float, y: float, polygon: list[tuple[float, float]]) -> bool:
    """Even-odd rule; coordinates in the same units as the polygon."""
    inside = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            xc = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xc:
                inside = not inside
    return inside


@dataclass(frozen=True, slots=True)
class TruthBox:
    """One person in one frame. Box in pixels (clipped to the frame)."""

    track_id: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    visible: float  # fraction of the person's full box inside the frame (0..1)
    in_zone: bool  # bottom-centre (feet) inside the zone polygon


@dataclass(frozen=True, slots=True)
class TrackTruth:
    track_id: int
    sprite: str
    kind: str  # "visit" (walks to the zone and stands) or "cross" (walks past)
    first_frame: int
    last_frame: int
    zone_intervals: tuple[tuple[int, int], ...]  # inclusive frame ranges with feet in the zone


@dataclass(slots=True)
class SceneTruth:
    fps: int
    size: tuple[int, int]
    zone_id: str
    zone: list[tuple[float, float]]  # normalised polygon
    frames: list[list[TruthBox]]
    tracks: list[TrackTruth] = field(default_factory=list)

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    def presence_fraction(self, min_visible: float = 0.0) -> float:
        """Fraction of frames with at least one person more than ``min_visible`` in view."""
        if not self.frames:
            return 0.0
        hit = sum(1 for boxes in self.frames if any(b.visible > min_visible for b in boxes))
        return hit / len(self.frames)

    def zone_intervals_s(self) -> list[tuple[int, float, float]]:
        """(track_id, enter_s, leave_s) for every stay in the zone, sorted by entry."""
        out = [(t.track_id, a / self.fps, (b + 1) / self.fps)
               for t in self.tracks for a, b in t.zone_intervals]
        return sorted(out, key=lambda r: r[1])

    def expected_intrusions(self, min_dwell_s: float) -> list[tuple[int, float]]:
        """(track_id, time the alert is due) for stays of at least ``min_dwell_s``."""
        return [(tid, a + min_dwell_s) for tid, a, b in self.zone_intervals_s() if b - a >= min_dwell_s]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": TRUTH_VERSION,
            "fps": self.fps,
            "size": list(self.size),
            "zone": {"id": self.zone_id, "polygon": [list(p) for p in self.zone]},
            "tracks": [
                {"id": t.track_id, "sprite": t.sprite, "kind": t.kind, "first_frame": t.first_frame,
                 "last_frame": t.last_frame, "zone_intervals": [list(iv) for iv in t.zone_intervals]}
                for t in self.tracks
            ],
            # per frame: [track_id, x1, y1, x2, y2, visible, in_zone]
            "frames": [
                [[b.track_id, *(round(v, 1) for v in b.box), round(b.visible, 3), int(b.in_zone)]
                 for b in boxes]
                for boxes in self.frames
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SceneTruth:
        frames = [
            [TruthBox(int(r[0]), (float(r[1]), float(r[2]), float(r[3]), float(r[4])), float(r[5]),
                      bool(r[6])) for r in boxes]
            for boxes in data["frames"]
        ]
        tracks = [
            TrackTruth(int(t["id"]), str(t["sprite"]), str(t["kind"]), int(t["first_frame"]),
                       int(t["last_frame"]), tuple((int(a), int(b)) for a, b in t["zone_intervals"]))
            for t in data["tracks"]
        ]
        zone = [(float(x), float(y)) for x, y in data["zone"]["polygon"]]
        w, h = data["size"]
        return cls(int(data["fps"]), (int(w), int(h)), str(data["zone"]["id"]), zone, frames, tracks)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")))

    @classmethod
    def load(cls, path: Path) -> SceneTruth:
        return cls.from_json(json.loads(path.read_text()))


def zone_intervals(flags: list[tuple[int, bool]]) -> tuple[tuple[int, int], ...]:
    """Inclusive runs of consecutive frames where the flag is set, from (frame, flag) pairs."""
    runs: list[tuple[int, int]] = []
    start = prev = None
    for frame, flag in flags:
        if flag and start is not None and prev is not None and frame == prev + 1:
            prev = frame
            continue
        if start is not None and prev is not None:
            runs.append((start, prev))
        start, prev = (frame, frame) if flag else (None, None)
    if start is not None and prev is not None:
        runs.append((start, prev))
    return tuple(runs)
