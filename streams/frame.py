"""The unit of video that flows from streams/ to detectors/."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded, resized BGR frame from a camera.

    ``captured_at`` is wall-clock time (``time.time()``) when the frame left the
    decoder; it is the start point of capture→incident latency.
    """

    camera_id: str
    seq: int
    captured_at: float
    image: npt.NDArray[np.uint8]
    source_size: tuple[int, int]  # (width, height) of the decoded stream before resize

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.image.shape[:2]
        return (w, h)
