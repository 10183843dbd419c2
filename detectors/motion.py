"""Cheap per-camera motion gating: skip inference on frames where nothing moved.

Each frame is shrunk to ~160 px wide grayscale (area averaging already removes most
sensor grain), blurred, compared with a running-average background (rescaled to the frame's
mean brightness first, ``cv2.accumulateWeighted``). Pixels differing by more
than ``threshold`` count as changed; a 3×3 opening removes the isolated speckles that
night grain and rain leave; the frame has motion when the changed fraction reaches
``min_area``.

What a street camera does that must not count as motion:

- sensor noise / night grain: averaging, blur, threshold and the opening absorb it;
- auto-exposure and lights dimming/brightening the whole scene: the background is scaled
  to the frame's mean brightness before differencing, so a global gain change cancels;
- a sudden scene-wide change that gain cannot explain (street lights or IR illuminator
  switching on, the day/night filter flipping, the camera being bumped): when more than
  ``global_fraction`` of the frame changes at once, the background is re-learnt from this
  frame and the frame reports no motion. Real objects seldom cover half the view.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What the last :meth:`MotionGate.update` saw (for debugging and overlays)."""

    moving: bool
    changed_fraction: float
    reason: str  # "warmup" | "motion" | "still" | "global-change"
    boxes: list[Box] = field(default_factory=list)  # changed regions, in the input image's pixels


class MotionGate:
    """Motion detector for one camera. Not thread-safe; use one per camera."""

    def __init__(
        self,
        threshold: int = 25,
        min_area: float = 0.002,
        *,
        width: int = 160,
        blur: int = 5,
        learn_rate: float = 0.05,
        global_fraction: float = 0.5,
        max_boxes: int = 16,
    ) -> None:
        if not 0 < learn_rate <= 1:
            raise ValueError("learn_rate must be in (0, 1]")
        self.threshold = threshold
        self.min_area = min_area
        self.width = width
        self.blur = blur | 1  # Gaussian kernel must be odd
        self.learn_rate = learn_rate
        self.global_fraction = global_fraction
        self.max_boxes = max_boxes
        self._background: npt.NDArray[np.float32] | None = None
        self._kernel = np.ones((3, 3), np.uint8)
        self.last = MotionResult(False, 0.0, "warmup")

    @property
    def changed_fraction(self) -> float:
        return self.last.changed_fraction

    @property
    def boxes(self) -> list[Box]:
        return self.last.boxes

    def reset(self) -> None:
        """Forget the background (e.g. after a stream reconnect or a PTZ move)."""
        self._background = None
        self.last = MotionResult(False, 0.0, "warmup")

    def _prepare(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        h, w = gray.shape[:2]
        if w > self.width:
            small = cv2.resize(
                gray, (self.width, max(1, round(h * self.width / w))), interpolation=cv2.INTER_AREA
            )
        else:
            small = gray
        small = cv2.GaussianBlur(small, (self.blur, self.blur), 0)
        return np.asarray(small, np.float32)

    def update(self, image: npt.NDArray[np.uint8]) -> bool:
        """Feed one frame (BGR or gray); True when something moved since the background."""
        cur = self._prepare(image)
        bg = self._background
        if bg is None or bg.shape != cur.shape:
            self._background = cur.copy()
            self.last = MotionResult(False, 0.0, "warmup")
            return False
        # Gain-normalise: auto-exposure and global light changes scale the whole frame, so the
        # background is rescaled to the frame's brightness before differencing (contrast of a
        # new object stays in real pixel units).
        ratio = float(cur.mean()) / max(float(bg.mean()), 1.0)
        if abs(ratio - 1.0) > 0.02:
            bg *= np.float32(ratio)
        diff = cv2.absdiff(cur, bg)
        mask = np.asarray(diff > self.threshold, np.uint8)
        mask = np.asarray(cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel), np.uint8)
        count = int(cv2.countNonZero(mask))
        fraction = count / mask.size
        if fraction >= self.global_fraction:
            # Scene-wide change in one step: lights, IR switch, camera bumped. Re-learn.
            self._background = cur.copy()
            self.last = MotionResult(False, fraction, "global-change")
            log.debug(
                "motion gate: %.0f%% of the frame changed at once; re-learning background", fraction * 100
            )
            return False
        cv2.accumulateWeighted(cur, bg, self.learn_rate)
        moving = fraction >= self.min_area
        boxes = self._boxes(mask, image.shape[1] / mask.shape[1]) if moving else []
        self.last = MotionResult(moving, fraction, "motion" if moving else "still", boxes)
        return moving

    def _boxes(self, mask: npt.NDArray[np.uint8], scale: float) -> list[Box]:
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_pixels = max(1, int(self.min_area * mask.size / 4))
        comps = [stats[i] for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_pixels]
        comps.sort(key=lambda s: -int(s[cv2.CC_STAT_AREA]))
        out: list[Box] = []
        for x, y, w, h, _area in comps[: self.max_boxes]:
            out.append((int(x * scale), int(y * scale), int((x + w) * scale), int((y + h) * scale)))
        return out
