"""``ultralytics``: a user's YOLO weights (.pt, .onnx, .engine) through the ultralytics runtime.

Only existing files are loaded. ``YOLO_OFFLINE=1`` and ``YOLO_AUTOINSTALL=false`` are set
before ultralytics is imported, so it neither downloads weights/assets nor pip-installs
missing requirements, and its telemetry stays off.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from detectors.backends.base import Image, make_detections
from detectors.detections import Detections
from detectors.models import prepare_ultralytics_env
from hub.config import UltralyticsBackend
from hub.errors import DetectorError, ModelNotFoundError

log = logging.getLogger(__name__)

SUFFIXES = (".pt", ".onnx", ".engine", ".torchscript")
MAX_BATCH = 8


def _import_yolo() -> Any:
    prepare_ultralytics_env()
    try:
        from ultralytics import YOLO  # type: ignore[attr-defined]
        from ultralytics.utils import SETTINGS
    except ImportError as exc:
        raise DetectorError(
            "the 'ultralytics' backend needs ultralytics and torch; install them with: "
            "pip install 'sanwang-hub[yolo]' (ultralytics-opencv-headless) plus a torch wheel"
        ) from exc
    # In memory only (no settings file written): no telemetry sync, no hub calls.
    dict.__setitem__(SETTINGS, "sync", False)
    return YOLO


class UltralyticsDetector:
    """Batched ``YOLO.predict`` with names lower-cased (``Normal`` -> ``normal``)."""

    name = "ultralytics"

    def __init__(self, cfg: UltralyticsBackend) -> None:
        path = Path(cfg.model)
        if not path.is_file():
            raise ModelNotFoundError(f"model file not found: {path} (ultralytics backend never downloads)")
        if path.suffix.lower() not in SUFFIXES:
            raise DetectorError(f"unsupported model file {path}; expected one of {', '.join(SUFFIXES)}")
        yolo = _import_yolo()
        try:
            self._model = yolo(str(path), task="detect")
        except Exception as exc:  # torch/ultralytics raise many kinds on a corrupt file
            raise DetectorError(f"ultralytics could not load {path}: {exc!r}") from exc
        names = self._model.names
        count = max(names) + 1 if names else 0
        self.labels: tuple[str, ...] = tuple(str(names.get(i, i)).lower() for i in range(count))
        self._cfg = cfg
        # .engine / static-shape .onnx files take one image per predict; .pt batches.
        self.max_batch = MAX_BATCH if path.suffix.lower() == ".pt" else 1
        self._lock = threading.Lock()
        log.info(
            "ultralytics loaded %s (labels %s, imgsz %d, device %s)", path, self.labels, cfg.imgsz, cfg.device
        )

    def infer(self, images: list[Image]) -> list[Detections]:
        if not images:
            return []
        with self._lock:
            try:
                results = self._model.predict(
                    list(images),
                    imgsz=self._cfg.imgsz,
                    conf=self._cfg.confidence,
                    device=self._cfg.device,
                    half=self._cfg.half,
                    verbose=False,
                )
            except Exception as exc:
                raise DetectorError(f"ultralytics inference failed: {exc!r}") from exc
        out: list[Detections] = []
        for result in results:
            boxes = result.boxes
            out.append(
                make_detections(
                    boxes.xyxy.cpu().numpy().astype(np.float32),
                    boxes.conf.cpu().numpy().astype(np.float32),
                    boxes.cls.cpu().numpy().astype(np.int64),
                    self.labels,
                )
            )
        return out

    def close(self) -> None:
        with self._lock:
            self._model = None
