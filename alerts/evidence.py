"""JPEG evidence snapshots: the latest frame of a camera with its boxes drawn.

Files are ``<dir>/<id>.jpg``; the web app serves them at ``/evidence/<id>.jpg``.
Encoding and writing run in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from detectors.detections import Detections
from hub.events import new_id
from streams.frame import Frame

log = logging.getLogger(__name__)

URL_PREFIX = "/evidence/"
_NAME = re.compile(r"^[0-9a-f]{16,64}\.jpg$")
Box = tuple[float, float, float, float]
FrameLookup = Callable[[str], tuple[Frame, Detections] | None]

_BOX = (80, 200, 80)  # BGR green: every detection
_HIGHLIGHT = (40, 40, 230)  # BGR red: the box that raised the alert


def render(image: npt.NDArray[np.uint8], detections: Detections, highlight: Box | None = None,
           quality: int = 85) -> bytes:
    """JPEG bytes of ``image`` with detection boxes (and ``highlight`` in red) drawn."""
    canvas = image.copy()
    h, w = canvas.shape[:2]
    thick = max(1, round(min(w, h) / 320))
    for i in range(len(detections)):
        x1, y1, x2, y2 = (round(float(v)) for v in detections.xyxy[i])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), _BOX, thick)
        label = f"{detections.labels[i]} {float(detections.confidence[i]):.2f}"
        cv2.putText(canvas, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, _BOX, thick)
    if highlight is not None:
        x1, y1, x2, y2 = (round(v) for v in highlight)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), _HIGHLIGHT, thick * 2)
    ok, buf = cv2.imencode(".jpg", canvas, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())


class EvidenceStore:
    def __init__(self, directory: Path, frames: FrameLookup, *, quality: int = 85) -> None:
        self.directory = Path(directory)
        self.frames = frames
        self.quality = quality
        self.written = 0

    def path_for(self, url_or_name: str) -> Path | None:
        """File behind ``/evidence/<name>.jpg`` (or a bare name); None for anything else."""
        name = url_or_name.removeprefix(URL_PREFIX)
        return self.directory / name if _NAME.match(name) else None

    async def snapshot(self, camera_id: str, highlight_box: Box | None = None) -> str | None:
        """Write the camera's latest frame with boxes; returns ``/evidence/<id>.jpg`` or None
        when the camera has no frame yet."""
        latest = self.frames(camera_id)
        if latest is None:
            log.debug("no frame for %s yet; incident without snapshot", camera_id)
            return None
        frame, detections = latest
        name = f"{new_id()}.jpg"
        try:
            await asyncio.to_thread(self._write, frame.image, detections, highlight_box, name)
        except (OSError, ValueError, cv2.error) as exc:
            log.warning("evidence snapshot for %s failed: %s", camera_id, exc)
            return None
        self.written += 1
        return URL_PREFIX + name

    def _write(self, image: npt.NDArray[np.uint8], detections: Detections, highlight: Box | None,
               name: str) -> None:
        data = render(image, detections, highlight, self.quality)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.directory / name)
