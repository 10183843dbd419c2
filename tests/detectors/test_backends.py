"""Detector backends on real images and real models (SSD-MobileNet, the YOLOv8s fall model)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from detectors.backends import load_backend
from detectors.backends.base import DetectorBackend
from detectors.detections import Detections
from detectors.models import ensure_fall_onnx, fall_model_pt
from hub.config import OnnxRuntimeBackend, OpenCvDnnBackend, UltralyticsBackend
from hub.errors import DetectorError, ModelNotFoundError
from tests.detectors.conftest import BUS_PEOPLE, ZIDANE_PEOPLE, Image, box_iou


def matched(found: Detections, truth: npt.NDArray[np.float32], min_iou: float) -> int:
    """How many truth boxes have their own detection with IoU >= min_iou (greedy)."""
    if len(found) == 0:
        return 0
    ious = box_iou(truth, found.xyxy)
    hits = 0
    used: set[int] = set()
    for row in ious:
        for j in np.argsort(-row):
            if row[j] >= min_iou and int(j) not in used:
                used.add(int(j))
                hits += 1
                break
    return hits


@pytest.fixture(scope="module")
def ssd() -> DetectorBackend:
    return load_backend(OpenCvDnnBackend(fit="tiles", confidence=0.4))


@pytest.fixture(scope="module")
def yolo() -> DetectorBackend:
    return load_backend(UltralyticsBackend(model=fall_model_pt(), imgsz=320, confidence=0.35))


@pytest.fixture(scope="module")
def onnx_fall(fall_onnx: Path) -> DetectorBackend:
    return load_backend(OnnxRuntimeBackend(model=fall_onnx, imgsz=320, confidence=0.35, iou=0.7))


# -- opencv-dnn -----------------------------------------------------------------------------------


def test_ssd_finds_the_people_and_the_bus(ssd: DetectorBackend, bus_image: Image) -> None:
    assert isinstance(ssd, DetectorBackend)
    assert ssd.labels[1] == "person"
    assert ssd.labels[3] == "car"
    assert ssd.labels[8] == "truck"
    (found,) = ssd.infer([bus_image])
    people = found.with_label("person")
    assert (people.confidence >= 0.4).all()
    # The three fully visible people, each matched by its own box; the edge-cut fourth person
    # stays below 0.4 with this model (see conftest.BUS_EDGE_PERSON).
    assert matched(people, BUS_PEOPLE, 0.6) == 3, people.to_json()
    assert len(found.with_label("bus")) == 1
    bus_box = found.with_label("bus").xyxy[0]
    assert box_iou(bus_box, [[10, 225, 805, 760]])[0, 0] > 0.8


def test_ssd_zidane_two_people(ssd: DetectorBackend, zidane_image: Image) -> None:
    (found,) = ssd.infer([zidane_image])
    people = found.with_label("person")
    assert len(people) == 2
    assert matched(people, ZIDANE_PEOPLE, 0.6) == 2, people.to_json()


def _street_scene(bus_image: Image) -> tuple[Image, npt.NDArray[np.float32]]:
    """A 640×360 frame (the hub's detect width): facade background, three small people."""
    canvas = cv2.resize(bus_image[0:330], (640, 360), interpolation=cv2.INTER_AREA)
    first, second = (bus_image[y0:y1, x0:x1] for x0, y0, x1, y1 in BUS_PEOPLE[:2].astype(int))
    truth = []
    for person, left in ((first, 40), (second, 300), (cv2.flip(second, 1), 540)):
        h, top = 150, 190
        w = round(person.shape[1] * h / person.shape[0])
        canvas[top : top + h, left : left + w] = cv2.resize(person, (w, h), interpolation=cv2.INTER_AREA)
        truth.append([left, top, left + w, top + h])
    return np.ascontiguousarray(canvas), np.array(truth, np.float32)


def test_tiles_keep_small_people_on_wide_frames(ssd: DetectorBackend, bus_image: Image) -> None:
    frame, truth = _street_scene(bus_image)
    (tiled,) = ssd.infer([frame])
    squash = load_backend(OpenCvDnnBackend(fit="squash", confidence=0.4))
    (squashed,) = squash.infer([frame])
    tiled_hits = matched(tiled.with_label("person"), truth, 0.5)
    assert tiled_hits == 3, tiled.to_json()
    assert tiled_hits >= matched(squashed.with_label("person"), truth, 0.5)


def test_ssd_batch_keeps_order(ssd: DetectorBackend, bus_image: Image, zidane_image: Image) -> None:
    small = cv2.resize(zidane_image, (640, 360), interpolation=cv2.INTER_AREA)
    blank = np.full((360, 640, 3), 90, np.uint8)
    images = [zidane_image, bus_image, blank, small]
    batch = ssd.infer(images)
    assert len(batch) == 4
    for image, got in zip(images, batch, strict=True):
        (alone,) = ssd.infer([image])
        np.testing.assert_allclose(got.xyxy, alone.xyxy, atol=1.0)
        assert got.labels == alone.labels
    assert len(batch[2]) == 0
    assert len(batch[0].with_label("person")) == 2
    assert len(batch[1].with_label("bus")) == 1
    # Boxes come back in each input's own pixels: the 640-wide copy's boxes are half the size.
    np.testing.assert_allclose(
        np.sort(batch[3].with_label("person").xyxy, axis=0),
        np.sort(batch[0].with_label("person").xyxy / 2, axis=0),
        atol=25,
    )


# -- ultralytics and onnxruntime --------------------------------------------------------------------


def test_ultralytics_fall_model_sees_people(yolo: DetectorBackend, bus_image: Image) -> None:
    assert tuple(yolo.labels) == ("normal", "fall")
    assert yolo.max_batch > 1
    (found,) = yolo.infer([bus_image])
    normal = found.with_label("normal")
    assert len(found.with_label("fall")) == 0
    assert (normal.confidence >= 0.35).all()
    assert matched(normal, BUS_PEOPLE, 0.5) >= 2, normal.to_json()


def test_onnxruntime_matches_ultralytics(
    yolo: DetectorBackend, onnx_fall: DetectorBackend, bus_image: Image, zidane_image: Image
) -> None:
    assert tuple(onnx_fall.labels) == ("normal", "fall")  # from the model's metadata
    assert onnx_fall.max_batch > 1  # exported with a dynamic batch dimension
    images = [bus_image, zidane_image, cv2.resize(bus_image, (405, 540))]
    ours = onnx_fall.infer(images)
    theirs = yolo.infer(images)
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs, strict=True):
        assert len(b) > 0
        assert len(a) == len(b), (a.to_json(), b.to_json())
        ious = box_iou(b.xyxy, a.xyxy)
        best = ious.argmax(axis=1)
        assert (ious.max(axis=1) > 0.9).all(), (a.to_json(), b.to_json())
        assert [a.labels[j] for j in best] == list(b.labels)
        np.testing.assert_allclose(a.confidence[best], b.confidence, atol=0.05)


def test_fall_onnx_export_is_reused(fall_onnx: Path) -> None:
    before = fall_onnx.stat().st_mtime_ns
    assert ensure_fall_onnx(fall_onnx.parent, imgsz=320) == fall_onnx
    assert fall_onnx.stat().st_mtime_ns == before
    assert not list(fall_onnx.parent.glob(".export-*"))  # the temporary export dir is gone


def test_unavailable_provider_falls_back_to_cpu(
    fall_onnx: Path, bus_image: Image, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = OnnxRuntimeBackend(
        model=fall_onnx, providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    )
    with caplog.at_level(logging.WARNING, logger="detectors.backends.onnxrt"):
        backend = load_backend(cfg)
    assert "CUDAExecutionProvider" in caplog.text
    assert "not available" in caplog.text
    assert getattr(backend, "providers", None) == ["CPUExecutionProvider"]
    (found,) = backend.infer([bus_image])
    assert len(found.with_label("normal")) >= 2
    backend.close()


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        UltralyticsBackend(model=Path("/nonexistent/yolo11n.pt")),
        OnnxRuntimeBackend(model=Path("/nonexistent/yolo11n.onnx")),
        OpenCvDnnBackend(model=Path("/nonexistent/graph.pb"), config=Path("/nonexistent/graph.pbtxt")),
    ],
    ids=["ultralytics", "onnxruntime", "opencv-dnn"],
)
def test_missing_model_file(cfg: UltralyticsBackend | OnnxRuntimeBackend | OpenCvDnnBackend) -> None:
    with pytest.raises(ModelNotFoundError, match="/nonexistent/"):
        load_backend(cfg)


def test_missing_runtime_names_the_install(monkeypatch: pytest.MonkeyPatch, fall_onnx: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(DetectorError, match="pip install onnxruntime"):
        load_backend(OnnxRuntimeBackend(model=fall_onnx))


def test_rect_inference_keeps_detections_with_fewer_pixels(fall_onnx: Path, bus_image: Image) -> None:
    from detectors.backends.base import rect_canvas

    wide = cv2.resize(bus_image, (640, 360))  # a 16:9 camera frame
    assert rect_canvas([wide.shape], 320) == (320, 192)
    assert rect_canvas([wide.shape, bus_image.shape], 320) == (320, 320)  # a batch shares one canvas
    square = load_backend(OnnxRuntimeBackend(model=fall_onnx, imgsz=320, rect=False, confidence=0.25))
    rect = load_backend(OnnxRuntimeBackend(model=fall_onnx, imgsz=320, confidence=0.25))
    a, b = square.infer([wide])[0], rect.infer([wide])[0]
    assert len(a) >= 3
    assert len(b) == len(a), (a.to_json(), b.to_json())
    ious = box_iou(a.xyxy, b.xyxy)
    assert (ious.max(axis=1) > 0.85).all(), (a.to_json(), b.to_json())
