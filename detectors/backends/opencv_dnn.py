"""``opencv-dnn``: TensorFlow SSD-MobileNet-v2-COCO through ``cv2.dnn`` (no extra dependencies).

The network sees a 300×300 square. How a camera frame becomes that square (``fit``):

- ``squash``: resize the whole frame to the square. Cheapest (1 forward) but a 16:9
  frame makes people 1.8× thinner, which costs recall on upright people.
- ``letterbox``: keep the aspect ratio, pad to a square. 1 forward, but everything
  shrinks by the long side, so small (far) people are lost.
- ``tiles`` (default): overlapping square tiles along the long side (2 for 4:3..16:9,
  3 for 2.35:1) plus one letterboxed full view for objects larger than a tile's overlap
  (buses, near people cut by a tile edge). Boxes are merged with class-wise NMS and
  tile-edge fragments covered by a bigger box are dropped. N+1 forwards, best recall.

Threads: OpenCV DNN parallelises one forward over its global thread pool (one thread per
core by default). We leave that global setting alone: on small boxes the hub runs one
inference worker, and decoding runs in PyAV threads that the OS schedules alongside.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from detectors.backends.base import Image, classwise_nms, letterbox, make_detections
from detectors.detections import Detections
from detectors.models import COCO90_LABELS, ssd_mobilenet_files
from hub.config import OpenCvDnnBackend
from hub.errors import DetectorError, ModelNotFoundError

log = logging.getLogger(__name__)

TILE_MIN_OVERLAP = 0.2  # of the tile side
SINGLE_VIEW_ASPECT = 1.15  # frames closer to square than this get one letterboxed view
NMS_IOU = 0.45
EDGE_FRAGMENT_IOS = 0.6  # a tile-cut box this much inside a bigger same-class box is a fragment
# Batching measured on this 2-core Xeon (shared, load ~7): a 4-input blob cost 357 ms per input
# against 260 ms for single forwards, i.e. no gain, so inputs go through the network one at a
# time and the analyzer should send one frame per call.
MAX_BATCH = 1
FORWARD_CHUNK = 1


@dataclass(frozen=True, slots=True)
class _View:
    """One square network input cut from an image: original = (net_xy - pad) / scale + origin."""

    image_index: int
    origin: tuple[int, int]
    pad: tuple[int, int]
    scale: tuple[float, float]
    region: tuple[int, int, int, int]  # x0, y0, x1, y1 of the region in the original image
    is_tile: bool


class OpenCvDnnDetector:
    """SSD-MobileNet-v2-COCO (or any TF Object Detection API SSD graph) on ``cv2.dnn``."""

    name = "opencv-dnn"

    def __init__(self, cfg: OpenCvDnnBackend) -> None:
        if cfg.model is None or cfg.config is None:
            graph, config = ssd_mobilenet_files()
            graph = cfg.model or graph
            config = cfg.config or config
        else:
            graph, config = cfg.model, cfg.config
        for path in (graph, config):
            if not path.is_file():
                raise ModelNotFoundError(f"model file not found: {path}")
        try:
            self._net = cv2.dnn.readNetFromTensorflow(str(graph), str(config))
        except cv2.error as exc:
            raise DetectorError(f"cv2.dnn could not load {graph} with {config}: {exc}") from exc
        self._cfg = cfg
        self._size = cfg.input_size
        self._lock = threading.Lock()
        self.labels: tuple[str, ...] = COCO90_LABELS
        self.max_batch = MAX_BATCH
        self._select_target(cfg.target)
        log.info("opencv-dnn loaded %s (input %d, fit=%s, target=%s)", graph, self._size, cfg.fit, cfg.target)

    def _select_target(self, target: str) -> None:
        backend, dnn_target = cv2.dnn.DNN_BACKEND_OPENCV, cv2.dnn.DNN_TARGET_CPU
        if target == "opencl":
            if cv2.ocl.haveOpenCL():
                dnn_target = cv2.dnn.DNN_TARGET_OPENCL
            else:
                log.warning("opencv-dnn: target 'opencl' requested but OpenCL is unavailable; using CPU")
        elif target == "cuda":
            cuda = getattr(cv2, "cuda", None)
            if cuda is not None and cuda.getCudaEnabledDeviceCount() > 0:
                backend, dnn_target = cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA
            else:
                log.warning("opencv-dnn: target 'cuda' requested but OpenCV has no CUDA device; using CPU")
        if dnn_target != cv2.dnn.DNN_TARGET_CPU:  # OpenCV 5 warns on any explicit target call
            self._net.setPreferableBackend(backend)
            self._net.setPreferableTarget(dnn_target)

    # -- views -------------------------------------------------------------------------------------

    def _views(self, index: int, image: Image) -> list[tuple[Image, _View]]:
        h, w = image.shape[:2]
        size = self._size
        fit = self._cfg.fit
        if fit == "squash":
            net_in = np.asarray(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), np.uint8)
            return [(net_in, _View(index, (0, 0), (0, 0), (size / w, size / h), (0, 0, w, h), False))]
        boxed, scale, pad = letterbox(image, size, pad_value=0)
        full = (boxed, _View(index, (0, 0), pad, (scale, scale), (0, 0, w, h), False))
        aspect = max(w, h) / min(w, h)
        if fit == "letterbox" or aspect < SINGLE_VIEW_ASPECT:
            return [full]
        side = min(w, h)
        long_side = max(w, h)
        count = max(2, math.ceil((aspect - TILE_MIN_OVERLAP) / (1 - TILE_MIN_OVERLAP)))
        step = (long_side - side) / (count - 1)
        views = [full]
        for i in range(count):
            start = round(i * step)
            x0, y0 = (start, 0) if w >= h else (0, start)
            crop = image[y0 : y0 + side, x0 : x0 + side]
            scale_t = size / side
            tile = np.asarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), np.uint8)
            views.append(
                (
                    tile,
                    _View(index, (x0, y0), (0, 0), (scale_t, scale_t), (x0, y0, x0 + side, y0 + side), True),
                )
            )
        return views

    # -- inference ---------------------------------------------------------------------------------

    def _forward(self, inputs: list[Image]) -> npt.NDArray[np.float32]:
        blob = cv2.dnn.blobFromImages(inputs, 1.0, (self._size, self._size), swapRB=True, crop=False)
        self._net.setInput(blob)
        out = np.asarray(self._net.forward(), np.float32)
        return out.reshape(-1, 7)  # rows: [image_id, class_id, score, x0, y0, x1, y1] (normalised)

    def infer(self, images: list[Image]) -> list[Detections]:
        views: list[tuple[Image, _View]] = []
        for i, image in enumerate(images):
            views.extend(self._views(i, image))
        rows: list[npt.NDArray[np.float32]] = []
        with self._lock:
            for start in range(0, len(views), FORWARD_CHUNK):
                chunk = views[start : start + FORWARD_CHUNK]
                out = self._forward([v[0] for v in chunk])
                out = out[out[:, 2] >= self._cfg.confidence]
                out[:, 0] += start  # image_id in the blob -> index into views
                rows.append(out)
        found = np.concatenate(rows) if rows else np.zeros((0, 7), np.float32)
        return [self._merge(i, images[i], found, [v for _, v in views]) for i in range(len(images))]

    def _merge(
        self, index: int, image: Image, found: npt.NDArray[np.float32], views: list[_View]
    ) -> Detections:
        h, w = image.shape[:2]
        boxes: list[npt.NDArray[np.float32]] = []
        scores: list[npt.NDArray[np.float32]] = []
        classes: list[npt.NDArray[np.int64]] = []
        cut: list[npt.NDArray[np.bool_]] = []
        for vi, view in enumerate(views):
            if view.image_index != index:
                continue
            sel = found[found[:, 0] == vi]
            if not len(sel):
                continue
            xyxy = sel[:, 3:7] * self._size
            xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - view.pad[0]) / view.scale[0] + view.origin[0]
            xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - view.pad[1]) / view.scale[1] + view.origin[1]
            xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
            boxes.append(xyxy)
            scores.append(sel[:, 2].astype(np.float32))
            classes.append(sel[:, 1].astype(np.int64))
            cut.append(_touches_inner_edge(xyxy, view, w, h) if view.is_tile else np.zeros(len(sel), bool))
        if not boxes:
            return Detections(labels=())
        xyxy, score, cls, edge = (
            np.concatenate(boxes),
            np.concatenate(scores),
            np.concatenate(classes),
            np.concatenate(cut),
        )
        if len(views) > 1:
            keep = classwise_nms(xyxy, score, cls, self._cfg.confidence, NMS_IOU)
            xyxy, score, cls, edge = xyxy[keep], score[keep], cls[keep], edge[keep]
            frag = _fragments(xyxy, cls, edge)
            xyxy, score, cls = xyxy[~frag], score[~frag], cls[~frag]
        return make_detections(xyxy, score, cls, self.labels)

    def close(self) -> None:
        with self._lock:
            self._net = None  # type: ignore[assignment]


def _touches_inner_edge(xyxy: npt.NDArray[np.float32], view: _View, w: int, h: int) -> npt.NDArray[np.bool_]:
    """Boxes that touch a tile edge which is not also an edge of the image (likely cut)."""
    x0, y0, x1, y1 = view.region
    tol = 2.0
    left = (xyxy[:, 0] <= x0 + tol) & (x0 > 0)
    right = (xyxy[:, 2] >= x1 - tol) & (x1 < w)
    top = (xyxy[:, 1] <= y0 + tol) & (y0 > 0)
    bottom = (xyxy[:, 3] >= y1 - tol) & (y1 < h)
    result: npt.NDArray[np.bool_] = left | right | top | bottom
    return result


def _fragments(
    xyxy: npt.NDArray[np.float32], cls: npt.NDArray[np.int64], edge: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Tile-edge boxes mostly inside a larger box of the same class (a cut piece of that object)."""
    drop = np.zeros(len(xyxy), bool)
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    for i in np.nonzero(edge)[0]:
        ix0 = np.maximum(xyxy[i, 0], xyxy[:, 0])
        iy0 = np.maximum(xyxy[i, 1], xyxy[:, 1])
        ix1 = np.minimum(xyxy[i, 2], xyxy[:, 2])
        iy1 = np.minimum(xyxy[i, 3], xyxy[:, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        covers = (cls == cls[i]) & (area > area[i]) & (inter >= EDGE_FRAGMENT_IOS * max(area[i], 1e-6))
        covers[i] = False
        drop[i] = bool(covers.any())
    return drop
