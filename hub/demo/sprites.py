"""Person sprites cut from package-shipped photos (no downloads).

ultralytics ships ``assets/bus.jpg`` with two full-body pedestrians. We cut them out with
GrabCut, initialised from the detector's box plus a coarse hand-drawn skeleton (head,
torso, legs) as sure foreground, then clean and feather the mask. Variants (mirrored,
clothing hue shifted, brightness) give a scene several distinct-looking people.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from hub.errors import HubError

Image = npt.NDArray[np.uint8]
Alpha = npt.NDArray[np.float32]


def u8(a: object) -> Image:
    """An OpenCV result as a typed uint8 array (no copy when it already is one)."""
    return np.asarray(a, dtype=np.uint8)


def f32(a: object) -> Alpha:
    """An OpenCV result as a typed float32 array (no copy when it already is one)."""
    return np.asarray(a, dtype=np.float32)

# Person boxes (x1, y1, x2, y2) in bus.jpg (810×1080), from SSD-MobileNet-v2 on the photo,
# and skeleton strokes (polylines) that are certainly the person.
Box = tuple[int, int, int, int]
_BUS_PEOPLE: dict[str, tuple[Box, list[list[tuple[int, int]]], list[Box]]] = {
    "coat": (
        (53, 394, 228, 898),
        [[(128, 429), (133, 574), (128, 694)], [(128, 694), (108, 714), (78, 874), (78, 889)],
         [(128, 694), (153, 714), (198, 874), (208, 879)]],
        [(126, 430, 24, 32)],  # head ellipses: cx, cy, ax, ay
    ),
    "jacket": (
        (224, 407, 355, 861),
        [[(284, 442), (289, 587), (289, 690)], [(289, 690), (269, 717), (274, 827), (274, 848)],
         [(289, 690), (304, 707), (289, 807)]],
        [(283, 440, 20, 28), (275, 848, 14, 8)],
    ),
}


@dataclass(frozen=True, slots=True)
class Sprite:
    """A person cut-out: BGR pixels and a float alpha (0..1), tight around the person."""

    name: str
    bgr: Image
    alpha: Alpha

    @property
    def aspect(self) -> float:
        """Width / height."""
        h, w = self.alpha.shape
        return float(w / h)

    def render(self, height: int) -> tuple[Image, Alpha]:
        """Pixels and alpha scaled to ``height`` pixels tall (width keeps the aspect)."""
        height = max(8, height)
        width = max(3, round(height * self.aspect))
        interp = cv2.INTER_AREA if height < self.alpha.shape[0] else cv2.INTER_LINEAR
        bgr = u8(cv2.resize(self.bgr, (width, height), interpolation=interp))
        alpha = f32(cv2.resize(self.alpha, (width, height), interpolation=interp))
        return bgr, alpha


def asset_path(package: str, *parts: str) -> Path:
    """A file shipped inside an installed package, located without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise HubError(f"package {package!r} is not installed; it ships the demo imagery")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise HubError(f"{path} is missing from the installed {package!r} package")
    return path


def _cut(image: Image, box: tuple[int, int, int, int], strokes: list[list[tuple[int, int]]],
         heads: list[tuple[int, int, int, int]]) -> tuple[Image, Alpha]:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    pad = 20
    rx1, ry1, rx2, ry2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)
    roi = np.ascontiguousarray(image[ry1:ry2, rx1:rx2])
    mask = np.full(roi.shape[:2], cv2.GC_BGD, np.uint8)
    mask[y1 - ry1 : y2 - ry1, x1 - rx1 : x2 - rx1] = cv2.GC_PR_BGD
    lines = [np.array([(x - rx1, y - ry1) for x, y in s], np.int32) for s in strokes]
    cv2.polylines(mask, lines, False, cv2.GC_PR_FGD, 40)
    cv2.polylines(mask, lines, False, cv2.GC_FGD, 12)
    for cx, cy, ax, ay in heads:
        cv2.ellipse(mask, (cx - rx1, cy - ry1), (ax, ay), 0, 0, 360, cv2.GC_FGD, -1)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.grabCut(roi, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    fg = np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    fg = u8(cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg)
    if count > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        fg = np.where(labels == biggest, 255, 0).astype(np.uint8)
    ys, xs = np.nonzero(fg)
    ty1, ty2, tx1, tx2 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    alpha = f32(cv2.GaussianBlur(fg.astype(np.float32) / 255.0, (5, 5), 1.2))
    return np.ascontiguousarray(roi[ty1:ty2, tx1:tx2]), np.ascontiguousarray(alpha[ty1:ty2, tx1:tx2])


@functools.cache
def base_sprites() -> tuple[Sprite, ...]:
    """The cut-outs from bus.jpg (computed once per process, ~3 s)."""
    path = asset_path("ultralytics", "assets", "bus.jpg")
    raw = cv2.imread(str(path))
    if raw is None:
        raise HubError(f"could not read {path}")
    image = u8(raw)
    out = []
    for name, (box, strokes, heads) in _BUS_PEOPLE.items():
        bgr, alpha = _cut(image, box, strokes, heads)
        out.append(Sprite(name, bgr, alpha))
    return tuple(out)


def variant(sprite: Sprite, *, mirror: bool, hue_shift: int, gain: float) -> Sprite:
    """A differently dressed copy: mirrored, clothing hue rotated, brightness scaled.

    Skin-coloured pixels (hue 0..25 with moderate saturation) keep their hue.
    """
    bgr = sprite.bgr[:, ::-1] if mirror else sprite.bgr
    alpha = sprite.alpha[:, ::-1] if mirror else sprite.alpha
    hsv = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2HSV).astype(np.int16)
    skin = (hsv[..., 0] <= 25) & (hsv[..., 1] > 40) & (hsv[..., 1] < 170) & (hsv[..., 2] > 90)
    hsv[..., 0] = np.where(skin, hsv[..., 0], (hsv[..., 0] + hue_shift) % 180)
    hsv[..., 2] = np.clip(hsv[..., 2] * gain, 0, 255)
    out = u8(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR))
    name = f"{sprite.name}{'_m' if mirror else ''}_h{hue_shift}_g{gain:.2f}"
    return Sprite(name, out, np.ascontiguousarray(alpha))


def sprite_pool(rng: np.random.Generator, count: int) -> list[Sprite]:
    """``count`` distinct-looking people drawn from the base cut-outs."""
    bases = base_sprites()
    pool = []
    for i in range(count):
        base = bases[i % len(bases)]
        pool.append(variant(base, mirror=bool(rng.integers(0, 2)), hue_shift=int(rng.integers(0, 180)),
                            gain=float(rng.uniform(0.75, 1.1))))
    return pool
