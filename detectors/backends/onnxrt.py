"""``onnxruntime``: YOLOv8/YOLO11-style ONNX exported by ultralytics, without torch.

Output layout ``B×(4+nc)×N`` (cx, cy, w, h in input pixels, then per-class scores).
Pre-processing is a centred letterbox (grey 114) like ultralytics'; post-processing is
class-wise NMS and scaling back to each input image's pixels. Execution providers are
tried in the configured order; ones this onnxruntime build lacks are skipped with a
warning, so a CUDA/TensorRT/OpenVINO config still runs on CPU.
"""

from __future__ import annotations

import ast
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.backends.base import Image, classwise_nms, letterbox, make_detections, rect_canvas
from detectors.detections import Detections
from hub.config import OnnxRuntimeBackend
from hub.errors import DetectorError, ModelNotFoundError

log = logging.getLogger(__name__)

MAX_BATCH = 8
MAX_CANDIDATES = 3000  # boxes per image handed to NMS (highest scores first)
DEFAULT_INTRA_THREADS = 1  # intra_threads 0 means this


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise DetectorError(
            "the 'onnxruntime' backend needs onnxruntime; install it with: pip install onnxruntime "
            "(or onnxruntime-gpu / onnxruntime-openvino for GPU providers)"
        ) from exc
    return onnxruntime


def select_providers(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """Configured providers this build has, in order; CPU when none is left."""
    chosen = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:
        log.warning(
            "onnxruntime: providers %s are not available in this build (available: %s); skipping them",
            missing,
            list(available),
        )
    if not chosen:
        chosen = ["CPUExecutionProvider"]
    return chosen


def _names_from_metadata(meta: dict[str, str]) -> list[str] | None:
    raw = meta.get("names")
    if not raw:
        return None
    try:
        parsed = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        log.warning("onnxruntime: cannot parse class names in model metadata: %.200s", raw)
        return None
    if isinstance(parsed, dict):
        count = max(int(k) for k in parsed) + 1 if parsed else 0
        return [str(parsed.get(i, i)) for i in range(count)]
    if isinstance(parsed, list):
        return [str(n) for n in parsed]
    return None


class OnnxRuntimeDetector:
    """A YOLO ONNX model on onnxruntime."""

    name = "onnxruntime"

    def __init__(self, cfg: OnnxRuntimeBackend) -> None:
        path = Path(cfg.model)
        if not path.is_file():
            raise ModelNotFoundError(f"model file not found: {path}")
        ort = _import_ort()
        options = ort.SessionOptions()
        # One intra-op thread unless configured: onnxruntime's own default (a spinning thread per
        # core) fights the stream decoders for the same cores and, measured on 2 cores, costs
        # about twice the CPU per frame (docs/performance.md). Idle pool threads sleep, not spin.
        options.intra_op_num_threads = cfg.intra_threads or DEFAULT_INTRA_THREADS
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = select_providers(cfg.providers, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise DetectorError(f"onnxruntime could not load {path}: {exc!r}") from exc
        inp = self._session.get_inputs()[0]
        self._input_name: str = inp.name
        batch, _, height, width = inp.shape
        self._dynamic_batch = not isinstance(batch, int)
        self._size = cfg.imgsz
        # Rectangular inputs only when the model takes any height/width (exported dynamic).
        self._rect = cfg.rect and not (isinstance(height, int) and isinstance(width, int))
        if isinstance(height, int) and isinstance(width, int):
            if height != width:
                raise DetectorError(f"{path}: only square inputs are supported, model has {width}x{height}")
            if height != cfg.imgsz:
                log.warning(
                    "onnxruntime: %s has a fixed input %d; ignoring imgsz %d", path, height, cfg.imgsz
                )
            self._size = height
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        names = cfg.class_names or _names_from_metadata(meta)
        if names is None:
            out_channels = self._session.get_outputs()[0].shape[1]
            names = [str(i) for i in range(int(out_channels) - 4)] if isinstance(out_channels, int) else []
        self.labels: tuple[str, ...] = tuple(n.lower() for n in names)
        self.max_batch = MAX_BATCH if self._dynamic_batch else 1
        self._cfg = cfg
        self._lock = threading.Lock()
        log.info(
            "onnxruntime loaded %s (providers %s, input %d%s, dynamic batch %s, labels %s)",
            path,
            self._session.get_providers(),
            self._size,
            " rect" if self._rect else "",
            self._dynamic_batch,
            self.labels,
        )

    def infer(self, images: list[Image]) -> list[Detections]:
        if not images:
            return []
        canvas = rect_canvas([im.shape for im in images], self._size) if self._rect else None
        prepared = [letterbox(im, self._size, canvas=canvas) for im in images]
        stacked = np.stack([p[0] for p in prepared])[..., ::-1].transpose(0, 3, 1, 2)
        blob = np.ascontiguousarray(stacked, dtype=np.float32) / np.float32(255.0)
        with self._lock:
            try:
                if self._dynamic_batch:
                    raw = self._session.run(None, {self._input_name: blob})[0]
                else:
                    raw = np.concatenate(
                        [
                            self._session.run(None, {self._input_name: blob[i : i + 1]})[0]
                            for i in range(len(blob))
                        ]
                    )
            except Exception as exc:
                raise DetectorError(f"onnxruntime inference failed: {exc!r}") from exc
        return [
            self._decode(np.asarray(raw[i], np.float32), prepared[i][1], prepared[i][2], images[i].shape[:2])
            for i in range(len(images))
        ]

    def _decode(
        self, pred: npt.NDArray[np.float32], scale: float, pad: tuple[int, int], shape: tuple[int, ...]
    ) -> Detections:
        pred = pred.T  # N × (4 + nc)
        scores_all = pred[:, 4:]
        cls = scores_all.argmax(axis=1).astype(np.int64)
        score = scores_all[np.arange(len(cls)), cls].astype(np.float32)
        sel = np.nonzero(score >= self._cfg.confidence)[0]
        if len(sel) > MAX_CANDIDATES:
            sel = sel[np.argsort(-score[sel])[:MAX_CANDIDATES]]
        if not len(sel):
            return Detections(labels=())
        cx, cy, bw, bh = pred[sel, 0], pred[sel, 1], pred[sel, 2], pred[sel, 3]
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - pad[0]) / scale
        xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - pad[1]) / scale
        h, w = shape[0], shape[1]
        xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
        keep = classwise_nms(xyxy, score[sel], cls[sel], self._cfg.confidence, self._cfg.iou)
        return make_detections(xyxy[keep], score[sel][keep], cls[sel][keep], self.labels)

    def close(self) -> None:
        with self._lock:
            self._session = None
