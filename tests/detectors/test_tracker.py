"""ByteTracker on scripted ground-truth tracks (boxes in pixels, time in seconds)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.detections import Detections
from detectors.tracker import ByteTracker, iou_matrix, linear_assignment
from hub.config import TrackerConfig

PERSON, CAR = 1, 3


def dets(boxes: list[tuple[float, float, float, float]], conf: list[float] | None = None,
         cls: list[int] | None = None) -> Detections:
    n = len(boxes)
    cls = cls or [PERSON] * n
    return Detections(
        xyxy=np.array(boxes, np.float32).reshape(n, 4),
        confidence=np.array(conf or [0.9] * n, np.float32),
        class_id=np.array(cls, np.int64),
        labels=tuple("person" if c == PERSON else "car" for c in cls),
    )


def person_at(x: float, y: float, w: float = 60, h: float = 150) -> tuple[float, float, float, float]:
    return (x, y, x + w, y + h)


def test_crossing_people_keep_their_ids() -> None:
    tracker = ByteTracker(TrackerConfig())
    fps = 5.0
    ids_a: list[int] = []
    ids_b: list[int] = []
    for i in range(30):
        t = i / fps
        xa = 40 + 18 * i  # left to right
        xb = 590 - 18 * i  # right to left: 10 px from A at frame 15 (IoU ≈ 0.8)
        out = tracker.update(dets([person_at(xa, 100), person_at(xb, 112, h=140)]), t)
        for k in range(len(out)):
            box = out.xyxy[k]
            (ids_a if abs(box[0] - xa) < 1 else ids_b).append(int(out.tracker_id[k]))
    # min_hits=2: confirmed from the second frame on, then on every frame.
    assert len(ids_a) == 29
    assert len(ids_b) == 29
    assert set(ids_a) == {ids_a[0]}
    assert set(ids_b) == {ids_b[0]}
    assert ids_a[0] != ids_b[0]


def test_missed_detections_keep_the_id_and_prediction_bridges_the_gap() -> None:
    tracker = ByteTracker(TrackerConfig(lost_after_s=2.0))
    seen: list[int] = []
    for i in range(25):
        if 10 <= i < 15:  # five analysed frames (1 s) without the person: occluded
            assert len(tracker.update(Detections.empty(), i * 0.2)) == 0
            continue
        out = tracker.update(dets([person_at(20 + 15 * i, 80)]), i * 0.2)
        seen += [int(v) for v in out.tracker_id]
    assert len(seen) == 19
    assert set(seen) == {1}


def test_gated_time_gap_without_updates_keeps_the_track_within_lost_after() -> None:
    tracker = ByteTracker(TrackerConfig(lost_after_s=2.0))
    for i in range(3):
        tracker.update(dets([person_at(100, 100)]), i * 0.2)
    tracker.age(1.8)  # frames not analysed (no motion): not looking is not seeing nothing
    assert tracker.live_tracks == 1
    out = tracker.update(dets([person_at(102, 100)]), 1.9)
    assert out.tracker_id.tolist() == [1]
    tracker.age(5.0)
    assert tracker.live_tracks == 0


def test_ids_are_never_reused_and_only_grow() -> None:
    tracker = ByteTracker(TrackerConfig(lost_after_s=1.0))
    all_ids: list[int] = []
    t = 0.0
    for _person in range(4):
        for _ in range(5):  # same spot every time: a new person after the old track expired
            out = tracker.update(dets([person_at(200, 100)]), t)
            all_ids += [int(v) for v in out.tracker_id]
            t += 0.2
        t += 1.5  # longer than lost_after_s
    distinct = list(dict.fromkeys(all_ids))
    assert distinct == [1, 2, 3, 4]
    assert all_ids == sorted(all_ids)


def test_low_confidence_boxes_continue_tracks_but_never_start_them() -> None:
    tracker = ByteTracker(TrackerConfig(high_threshold=0.5, low_threshold=0.1))
    for i in range(3):
        tracker.update(dets([person_at(100 + 5 * i, 100)], [0.8]), i * 0.2)
    # Partly occluded: the detector is unsure, ByteTrack's second stage keeps the track.
    out = tracker.update(dets([person_at(115, 100), person_at(400, 100)], [0.3, 0.3]), 0.6)
    assert out.tracker_id.tolist() == [1]
    assert out.xyxy[0, 0] == 115
    for i in range(4, 8):  # a lone weak box never becomes a track
        out = tracker.update(dets([person_at(115 + 5 * i, 100), person_at(400, 100)], [0.8, 0.3]), i * 0.2)
        assert out.tracker_id.tolist() == [1]


def test_classes_are_tracked_separately() -> None:
    tracker = ByteTracker(TrackerConfig())
    box = person_at(100, 100, 120, 120)
    for i in range(3):
        tracker.update(dets([box], cls=[PERSON]), i * 0.2)
    out = tracker.update(dets([box], cls=[CAR]), 0.6)
    assert len(out) == 0  # a car where a person was is a new (tentative) track, not the person
    out = tracker.update(dets([box], cls=[CAR]), 0.8)
    assert out.tracker_id.tolist() == [2]
    assert out.labels == ("car",)

    agnostic = ByteTracker(TrackerConfig(), per_class=False)
    for i in range(3):
        agnostic.update(dets([box], cls=[PERSON]), i * 0.2)
    assert agnostic.update(dets([box], cls=[CAR]), 0.6).tracker_id.tolist() == [1]


def test_min_hits_one_confirms_immediately() -> None:
    tracker = ByteTracker(TrackerConfig(min_hits=1))
    out = tracker.update(dets([person_at(10, 10), person_at(300, 10)]), 0.0)
    assert sorted(out.tracker_id.tolist()) == [1, 2]


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    m = iou_matrix(a, b)
    assert m.shape == (2, 2)
    assert abs(m[0, 0] - 50 / 150) < 1e-9
    assert m[0, 1] == 0
    assert m[1, 0] == 0


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.data())
def test_linear_assignment_is_optimal(n: int, m: int, data: st.DataObject) -> None:
    values = data.draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=n * m, max_size=n * m))
    cost = np.array(values, np.float64).reshape(n, m)
    pairs = linear_assignment(cost)
    k = min(n, m)
    assert len(pairs) == k
    assert len({r for r, _ in pairs}) == k
    assert len({c for _, c in pairs}) == k
    best = min(
        sum(cost[r, c] for r, c in zip(rows, cols, strict=True))
        for rows in itertools.combinations(range(n), k)
        for cols in itertools.permutations(range(m), k)
    )
    assert abs(sum(cost[r, c] for r, c in pairs) - best) < 1e-6


def test_fast_walker_at_low_frame_rate_keeps_one_track() -> None:
    # 55 px per analysed frame with a 65 px wide box: consecutive boxes barely overlap
    # (IoU ≈ 0.08 < match_iou) until the filter has learnt the velocity.
    tracker = ByteTracker(TrackerConfig())
    ids: list[int] = []
    for i in range(10):
        out = tracker.update(dets([person_at(10 + 55 * i, 150, w=65, h=185)]), i * 0.2)
        ids += [int(v) for v in out.tracker_id]
    assert ids == [1] * 9


def test_a_far_away_box_is_a_different_object() -> None:
    tracker = ByteTracker(TrackerConfig(min_hits=1))
    first = tracker.update(dets([person_at(10, 150)]), 0.0)
    second = tracker.update(dets([person_at(300, 150)]), 0.2)
    assert first.tracker_id.tolist() == [1]
    assert second.tracker_id.tolist() == [2]
