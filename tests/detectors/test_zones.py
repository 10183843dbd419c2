"""ZoneRule on scripted tracks: dwell, grace, cooldown, labels and the feet anchor."""

from __future__ import annotations

import numpy as np

from detectors.detections import Detections
from detectors.zones import ZoneRule, points_in_polygon
from hub.config import ZoneConfig

SIZE = (640, 360)
# Right half of the frame, lower two thirds (the ground in front of a door).
ZONE = ZoneConfig(id="door", polygon=[(0.5, 0.33), (1.0, 0.33), (1.0, 1.0), (0.5, 1.0)],
                  min_dwell_s=1.0, cooldown_s=10.0)


def track(tid: int, feet_x: float, feet_y: float, label: str = "person", conf: float = 0.8) -> Detections:
    w, h = (40, 100) if label == "person" else (120, 60)
    return Detections(
        xyxy=np.array([[feet_x - w / 2, feet_y - h, feet_x + w / 2, feet_y]], np.float32),
        confidence=np.array([conf], np.float32),
        class_id=np.array([1 if label == "person" else 3], np.int64),
        tracker_id=np.array([tid], np.int64),
        labels=(label,),
    )


def run(rule: ZoneRule, path: list[tuple[float, Detections]]) -> list[tuple[float, str | None, int]]:
    hits = []
    for seq, (t, d) in enumerate(path):
        for h in rule.update(d, t, frame_seq=seq):
            hits.append((h.captured_at, h.zone, h.track_id))
            assert h.camera_id == "cam1"
            assert h.frame_seq == seq
            assert h.rule == "intrusion"
    return hits


def test_points_in_polygon_matches_geometry() -> None:
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float64)
    pts = np.array([[5, 5], [11, 5], [-1, -1], [9.9, 0.1], [5, 20]], np.float64)
    assert points_in_polygon(pts, square).tolist() == [True, False, False, True, False]
    triangle = np.array([[0, 0], [10, 0], [0, 10]], np.float64)
    assert points_in_polygon(np.array([[2, 2], [8, 8]]), triangle).tolist() == [True, False]


def test_walking_past_outside_the_zone_never_fires() -> None:
    rule = ZoneRule(ZONE, SIZE, camera_id="cam1")
    # Walks along the top edge: head inside the zone's area, feet above it (y=100 < 0.33*360).
    path = [(i * 0.2, track(1, 20 + 30 * i, 100)) for i in range(20)]
    assert run(rule, path) == []


def test_entering_and_staying_fires_exactly_once() -> None:
    rule = ZoneRule(ZONE, SIZE, camera_id="cam1")
    path = [(i * 0.2, track(7, 100 + 40 * i, 300)) for i in range(6)]  # walks in (x ≥ 320 from i=6)
    path += [(1.2 + i * 0.2, track(7, 400, 300)) for i in range(40)]  # stays 8 s
    hits = run(rule, path)
    assert len(hits) == 1
    t, zone, tid = hits[0]
    assert zone == "door"
    assert tid == 7
    # Entered at t=1.2 (first frame inside); fires on the first frame with dwell ≥ 1 s.
    assert abs(t - 2.2) < 1e-9


def test_short_visit_below_dwell_does_not_fire() -> None:
    rule = ZoneRule(ZONE, SIZE, camera_id="cam1")
    path = [(i * 0.2, track(2, 400, 300)) for i in range(4)]  # 0.6 s inside
    path += [(0.8 + i * 0.2, track(2, 100, 300)) for i in range(20)]  # then outside for good
    assert run(rule, path) == []


def test_flicker_shorter_than_grace_does_not_reset_dwell() -> None:
    rule = ZoneRule(ZONE, SIZE, camera_id="cam1", grace_s=1.0)
    path: list[tuple[float, Detections]] = []
    for i in range(10):  # inside, but every third analysed frame the track is missing
        path.append((i * 0.2, track(3, 400, 300) if i % 3 else Detections.empty()))
    hits = run(rule, path)
    assert len(hits) == 1
    # Dwell counted from t=0.2 (first seen inside); the first frame seeing it inside with
    # dwell ≥ 1 s is t=1.4 (t=1.2 is a gap). Resetting on each gap would never fire.
    assert abs(hits[0][0] - 1.4) < 1e-9


def test_car_in_person_only_zone_never_fires() -> None:
    rule = ZoneRule(ZONE, SIZE, camera_id="cam1")
    path = [(i * 0.2, track(4, 450, 320, label="car")) for i in range(30)]
    assert run(rule, path) == []


def test_untracked_detections_are_ignored() -> None:
    rule = ZoneRule(ZONE, SIZE, camera_id="cam1")
    d = track(5, 400, 300)
    d.tracker_id = np.array([-1], np.int64)
    assert run(rule, [(i * 0.2, d) for i in range(20)]) == []


def test_reentry_within_cooldown_is_quiet_and_after_cooldown_fires_again() -> None:
    rule = ZoneRule(ZONE, SIZE, camera_id="cam1")
    step = 0
    path: list[tuple[float, Detections]] = []

    def stay(x: float, seconds: float) -> None:
        nonlocal step
        for _ in range(round(seconds / 0.2)):
            path.append((step * 0.2, track(9, x, 300)))
            step += 1

    stay(400, 2.0)  # visit 1: hit at 1.0
    stay(100, 2.0)  # leaves (longer than grace)
    stay(400, 2.0)  # visit 2 at 4.0-6.0: inside cooldown (hit at 1.0 + 10 s) -> quiet
    stay(100, 6.0)  # leaves until 12.0
    stay(400, 2.0)  # visit 3 at 12.0: cooldown over -> second hit at 13.0
    hits = run(rule, path)
    assert [round(h[0], 1) for h in hits] == [1.0, 13.0]
    assert {h[2] for h in hits} == {9}


def test_visit_that_outlasts_the_cooldown_fires_when_it_ends() -> None:
    zone = ZONE.model_copy(update={"cooldown_s": 3.0})
    rule = ZoneRule(zone, SIZE, camera_id="cam1")
    path = [(i * 0.2, track(1, 400, 300)) for i in range(10)]  # hit at 1.0
    path += [(2.0 + i * 0.2, track(1, 100, 300)) for i in range(10)]  # out 2.0-4.0
    path += [(4.0 + i * 0.2, track(1, 400, 300)) for i in range(15)]  # back from 4.0 to 6.8
    hits = run(rule, path)
    # Re-entry at 4.0 reaches its dwell at 5.0 (cooldown ended at 4.0): fires at 5.0.
    assert [round(h[0], 1) for h in hits] == [1.0, 5.0]


def test_two_tracks_fire_independently() -> None:
    rule = ZoneRule(ZONE, SIZE, camera_id="cam1")
    path = [(i * 0.2, Detections.merge([track(1, 400, 300), track(2, 550, 250)])) for i in range(10)]
    hits = run(rule, path)
    assert sorted(h[2] for h in hits) == [1, 2]
