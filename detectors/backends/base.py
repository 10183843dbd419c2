"""The one protocol every detector backend implements, plus small shared helpers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import numpy.typing as npt

from detectors.detections import Detections

Image = npt.NDArray[np.uint8]


@runtime_checkable
class DetectorBackend(Protocol):
    """A loaded model that turns BGR images into detections.

    ``infer`` is synchronous and is called from a worker thread; one instance is
    used by one thread at a time. Boxes come back in each input image's pixels.
    """

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> Sequence[str]:
        """Class index -> lower-case label ("person", "car", "normal", "fall")."""

    @property
    def max_batch(self) -> int:
        """Images one infer() call should get; 1 when batching gains nothing."""

    def infer(self, images: list[Image]) -> list[Detections]: ...

    def close(self) -> None: ...


def letterbox(
    image: Image, size: int, pad_value: int = 114, canvas: tuple[int, int] | None = None
) -> tuple[Image, float, tuple[int, int]]:
    """Resize keeping the aspect ratio so the long side is ``size``, centred on a canvas.

    The canvas is ``size``×``size`` unless ``canvas`` (width, height) is given (rectangular
    inference for models with dynamic input shapes, see :func:`rect_canvas`). Returns the
    canvas, the scale applied and the (left, top) padding, so that
    ``original = (letterboxed - pad) / scale``.
    """
    cw, ch = canvas or (size, size)
    h, w = image.shape[:2]
    scale = min(size / w, size / h, cw / w, ch / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else image
    left, top = (cw - nw) // 2, (ch - nh) // 2
    out = np.full((ch, cw, 3), pad_value, np.uint8)
    out[top : top + nh, left : left + nw] = resized
    return out, scale, (left, top)


def rect_canvas(shapes: Sequence[tuple[int, ...]], size: int, stride: int = 32) -> tuple[int, int]:
    """Smallest (width, height), multiples of ``stride``, that fit every image scaled to long side ``size``.

    A 16:9 frame at size 320 needs 320×192 instead of a 320×320 square: 40 % fewer pixels
    through the network for the same detail (ultralytics' own "rect" inference).
    """
    cw = ch = stride
    for shape in shapes:
        h, w = shape[0], shape[1]
        scale = size / max(w, h)
        cw = max(cw, math.ceil(round(w * scale) / stride) * stride)
        ch = max(ch, math.ceil(round(h * scale) / stride) * stride)
    return cw, ch


def classwise_nms(
    xyxy: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int64],
    score_threshold: float,
    iou_threshold: float,
) -> npt.NDArray[np.int64]:
    """Indices kept by per-class NMS (boxes of different classes never suppress each other)."""
    if len(xyxy) == 0:
        return np.zeros((0,), np.int64)
    # Offset boxes by class so one NMS call separates classes (the batched-NMS trick).
    offset = class_ids.astype(np.float32)[:, None] * (float(xyxy.max()) + 1.0)
    shifted = xyxy + offset
    xywh = np.concatenate([shifted[:, :2], shifted[:, 2:] - shifted[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold, iou_threshold)
    return np.asarray(keep, np.int64).reshape(-1)


def make_detections(
    xyxy: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int64],
    labels: Sequence[str],
) -> Detections:
    """Detections with ``labels`` filled from the class table (order by descending confidence)."""
    order = np.argsort(-scores, kind="stable")
    class_ids = class_ids[order]
    names = tuple(labels[c] if 0 <= c < len(labels) else str(int(c)) for c in class_ids)
    return Detections(xyxy=xyxy[order], confidence=scores[order], class_id=class_ids, labels=names)
