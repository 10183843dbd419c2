"""Shared fixtures for detector tests: real images, hand-checked boxes, the exported fall ONNX."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from detectors.models import ensure_fall_onnx
from detectors.tracker import iou_matrix

Image = npt.NDArray[np.uint8]

# People in ultralytics' assets/bus.jpg (810×1080), checked by eye on crops with a pixel ruler.
# The fourth person (cut by the left image edge, only ~75 px of them visible) is listed apart:
# SSD-MobileNet scores them 0.13–0.33 in every fit, the fall model misses them at imgsz 320.
BUS_PEOPLE = np.array([[50, 395, 240, 905], [222, 405, 350, 865], [668, 370, 810, 878]], np.float32)
BUS_EDGE_PERSON = np.array([0, 552, 76, 875], np.float32)
# The two people in assets/zidane.jpg (1280×720): Zidane leaning and pointing (left; where his
# outstretched arm ends is ambiguous, so the box is loose on the right) and the coach (right).
ZIDANE_PEOPLE = np.array([[115, 200, 1050, 720], [740, 40, 1150, 720]], np.float32)


def _asset(name: str) -> Path:
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None, "ultralytics is not installed"
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / name


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """IoU matrix between boxes ``a`` (N×4) and ``b`` (M×4), xyxy (the tracker's own)."""
    return iou_matrix(np.asarray(a, np.float64), np.asarray(b, np.float64))


@pytest.fixture(scope="session")
def bus_image() -> Image:
    image = cv2.imread(str(_asset("bus.jpg")))
    assert image is not None
    return np.asarray(image, np.uint8)


@pytest.fixture(scope="session")
def zidane_image() -> Image:
    image = cv2.imread(str(_asset("zidane.jpg")))
    assert image is not None
    return np.asarray(image, np.uint8)


@pytest.fixture(scope="session")
def fall_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fall model exported to ONNX (dynamic batch, imgsz 320) once per test session (~6–10 s)."""
    return ensure_fall_onnx(tmp_path_factory.mktemp("onnx-cache"), imgsz=320)
