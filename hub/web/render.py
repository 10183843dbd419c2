"""Draw detection boxes and zone polygons on a frame and encode it as JPEG.

Everything here is synchronous CPU work: callers run it in a worker thread, never on the
event loop. The frame's image is never modified (frames are shared, read-only values).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from detectors.detections import Detections
from hub.config import ZoneConfig
from streams.frame import Frame

BGR = tuple[int, int, int]
_PALETTE: dict[str, BGR] = {
    "person": (0, 200, 255),
    "car": (255, 160, 0),
    "bus": (255, 90, 0),
    "truck": (200, 60, 0),
    "bicycle": (120, 255, 120),
    "motorcycle": (60, 220, 60),
    "fall": (0, 0, 255),
}
_ZONE_COLOUR: BGR = (80, 80, 255)
_FALLBACK: BGR = (230, 230, 230)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _colour(label: str) -> BGR:
    return _PALETTE.get(label.lower(), _FALLBACK)


def _ascii(text: str) -> str:
    """Hershey fonts draw ASCII only; keep what they can show."""
    return text.encode("ascii", "replace").decode("ascii")


def draw_zones(img: npt.NDArray[np.uint8], zones: Sequence[ZoneConfig]) -> None:
    """Zones are fractions of the frame: scale to pixels, fill translucently, outline."""
    if not zones:
        return
    h, w = img.shape[:2]
    overlay = img.copy()
    polys = []
    for zone in zones:
        pts = np.array([[x * (w - 1), y * (h - 1)] for x, y in zone.polygon], np.int32).reshape(-1, 1, 2)
        polys.append((zone, pts))
        cv2.fillPoly(overlay, [pts], _ZONE_COLOUR)
    cv2.addWeighted(overlay, 0.18, img, 0.82, 0, dst=img)
    for zone, pts in polys:
        cv2.polylines(img, [pts], True, _ZONE_COLOUR, 2, cv2.LINE_AA)
        x, y = pts[0, 0]
        cv2.putText(img, _ascii(zone.id), (int(x) + 4, int(y) + 16), _FONT, 0.5, _ZONE_COLOUR, 1, cv2.LINE_AA)


def draw_detections(img: npt.NDArray[np.uint8], dets: Detections) -> None:
    h, w = img.shape[:2]
    thick = max(1, round(w / 400))
    for i in range(len(dets)):
        x1, y1, x2, y2 = (round(float(v)) for v in dets.xyxy[i])
        x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
        y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
        label = dets.labels[i]
        colour = _colour(label)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
        text = f"{label} {float(dets.confidence[i]):.2f}"
        if int(dets.tracker_id[i]) >= 0:
            text += f" #{int(dets.tracker_id[i])}"
        text = _ascii(text)
        (tw, th), base = cv2.getTextSize(text, _FONT, 0.5, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else y1 + th + 4
        cv2.rectangle(img, (x1, ty - th - 2), (x1 + tw + 4, ty + base - 2), colour, -1)
        cv2.putText(img, text, (x1 + 2, ty - 2), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)


def draw_caption(img: npt.NDArray[np.uint8], frame: Frame) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(frame.captured_at))
    text = _ascii(f"{frame.camera_id}  {stamp}  #{frame.seq}")
    # Top right: cameras burn their own OSD (time, name) into the top-left and bottom-left corners.
    (tw, _th), _ = cv2.getTextSize(text, _FONT, 0.5, 1)
    org = (max(4, img.shape[1] - tw - 8), 20)
    cv2.putText(img, text, org, _FONT, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, _FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def render_jpeg(
    frame: Frame, dets: Detections | None, zones: Sequence[ZoneConfig] = (), *, quality: int = 80
) -> bytes:
    """Annotated JPEG of ``frame`` (same pixel size as ``frame.image``)."""
    img: npt.NDArray[np.uint8] = np.ascontiguousarray(frame.image).copy()
    draw_zones(img, zones)
    if dets is not None and len(dets):
        draw_detections(img, dets)
    draw_caption(img, frame)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - imencode fails only on invalid images
        raise ValueError(f"JPEG encoding failed for camera {frame.camera_id!r}")
    return bytes(buf.tobytes())
