"""Shared pieces for the alerts tests: a real image as the camera's latest frame."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np

from detectors.detections import Detections
from streams.frame import Frame


def bus_jpg() -> Path:
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin).parent / "assets" / "bus.jpg"


# People in ultralytics' bus.jpg (810x1080), boxes measured by eye on the image.
PEOPLE = np.array([[50, 400, 245, 905], [220, 405, 345, 860], [668, 390, 810, 880]], np.float32)


class FrameSlots:
    """The ``frames`` lookup an EvidenceStore takes, backed by real decoded images."""

    def __init__(self, cameras: list[str]) -> None:
        raw = cv2.imread(str(bus_jpg()))
        assert raw is not None
        image = np.ascontiguousarray(raw, dtype=np.uint8)
        dets = Detections(xyxy=PEOPLE, confidence=np.array([0.9, 0.85, 0.8], np.float32),
                          class_id=np.zeros(3, np.int64), labels=("person",) * 3)
        h, w = image.shape[:2]
        self.slots = {c: (Frame(c, 1, time.time(), image, (w, h)), dets) for c in cameras}

    def __call__(self, camera_id: str) -> tuple[Frame, Detections] | None:
        return self.slots.get(camera_id)
