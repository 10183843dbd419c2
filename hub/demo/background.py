"""Static camera backgrounds built from real photo textures (bus.jpg's facade and pavement).

All layouts share one ground-plane geometry: the wall meets the ground at ``BASE_Y`` (fraction
of the frame height) and a person whose feet are at ``y`` is :func:`person_height` tall, so
people are ~15 % of the frame high at the wall and ~40 % near the camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from hub.demo.sprites import Image, asset_path, u8
from hub.errors import HubError

Layout = Literal["courtyard", "gate", "parking"]
FloatImage = npt.NDArray[np.float32]

BASE_Y = 0.55  # wall base (far edge of the visible ground), fraction of frame height
NEAR_Y = 0.97  # feet this low are the nearest a person walks


def person_height(feet_y: float, frame_h: int) -> float:
    """Pixel height of a 1.7 m person whose feet are at pixel row ``feet_y``."""
    frac = feet_y / frame_h
    return frame_h * (0.15 + 0.25 * (frac - BASE_Y) / (NEAR_Y - BASE_Y))


@dataclass(frozen=True, slots=True)
class SceneGeometry:
    """Where things are in a layout (fractions of width/height)."""

    layout: Layout
    door: tuple[float, float]  # x range of the door/gate on the wall
    zone: tuple[tuple[float, float], ...]  # zone polygon in front of the door
    zone_id: str
    lamps: tuple[float, ...]  # x of lamp posts (standing at the wall base)

    @property
    def door_spot(self) -> tuple[float, float]:
        """Where a visitor stands: the middle of the zone's feet area."""
        xs = [p[0] for p in self.zone]
        ys = [p[1] for p in self.zone]
        return (sum(xs) / len(xs), (min(ys) + max(ys)) / 2)


GEOMETRY: dict[Layout, SceneGeometry] = {
    "courtyard": SceneGeometry(
        "courtyard", (0.56, 0.66),
        ((0.52, 0.57), (0.70, 0.57), (0.74, 0.74), (0.48, 0.74)), "door", (0.18, 0.86)),
    "gate": SceneGeometry(
        "gate", (0.40, 0.60),
        ((0.36, 0.57), (0.64, 0.57), (0.68, 0.76), (0.32, 0.76)), "gate", (0.30, 0.70)),
    "parking": SceneGeometry(
        "parking", (0.10, 0.18),
        ((0.62, 0.60), (0.95, 0.60), (0.98, 0.80), (0.58, 0.80)), "restricted", (0.45,)),
}


def _read(name: str) -> Image:
    path = asset_path("ultralytics", "assets", name)
    img = cv2.imread(str(path))
    if img is None:
        raise HubError(f"could not read {path}")
    return u8(img)


def _wall(w: int, base: int, layout: Layout, rng: np.random.Generator) -> Image:
    facade = _read("bus.jpg")[0:235, 0:810]  # yellow facade with windows and balconies
    row_h = max(40, base // 2)
    tile = cv2.resize(facade, (round(810 * row_h / 235), row_h), interpolation=cv2.INTER_AREA)
    if layout == "parking":  # a plainer, greyer building across the lot
        tile = u8(cv2.cvtColor(cv2.cvtColor(tile, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR))
    offset = int(rng.integers(0, tile.shape[1]))
    reps = (w + offset) // tile.shape[1] + 2
    strip = np.hstack([tile] * reps)[:, offset : offset + w]
    wall = np.vstack([strip] * (base // row_h + 1))[-base:]
    # the ground floor: a plain plinth band where the door sits
    plinth_top = base - round(base * 0.36)
    colour = np.array([110, 150, 170] if layout != "parking" else [120, 122, 124], np.float32)
    band = np.clip(colour + rng.normal(0, 6, (base - plinth_top, w, 1)), 0, 255).astype(np.uint8)
    wall[plinth_top:] = band
    cv2.line(wall, (0, plinth_top), (w, plinth_top), (70, 90, 100), 2)
    return u8(wall)


def _ground(w: int, h: int, base: int) -> Image:
    bus = _read("bus.jpg")
    pave_f = bus[905:1080, 0:810].astype(np.float32)  # sunlit cobbles with tree shadows
    # keep the cobble texture, drop the tree shadows (low frequencies) and soften contrast
    low = cv2.GaussianBlur(pave_f, (0, 0), 12)
    flat = (pave_f - low) * 0.8 + np.array([128, 130, 132], np.float32)
    pave = np.clip(flat, 0, 255).astype(np.uint8)
    tex = np.vstack([np.hstack([pave] * 4)] * 2)
    th, tw = tex.shape[:2]
    src = np.array([[0, 0], [tw, 0], [tw, th], [0, th]], np.float32)
    dst = np.array([[-1.0 * w, base], [2.0 * w, base], [1.15 * w, h], [-0.15 * w, h]], np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    return u8(cv2.warpPerspective(tex, m, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))


def _draw_door(img: Image, geo: SceneGeometry, w: int, h: int, base: int) -> None:
    x1, x2 = round(geo.door[0] * w), round(geo.door[1] * w)
    door_h = round(person_height(base, h) * 1.3)
    top = base - door_h
    if geo.layout == "gate":
        cv2.rectangle(img, (x1 - 8, top - 10), (x2 + 8, base), (60, 60, 62), -1)
        cv2.rectangle(img, (x1, top), (x2, base), (35, 38, 40), -1)
        for x in range(x1 + 6, x2, 9):  # vertical bars
            cv2.line(img, (x, top), (x, base), (95, 100, 105), 2)
        cv2.line(img, (x1, top + door_h // 3), (x2, top + door_h // 3), (95, 100, 105), 3)
    elif geo.layout == "courtyard":
        cv2.rectangle(img, (x1 - 6, top - 6), (x2 + 6, base), (150, 170, 180), -1)
        cv2.rectangle(img, (x1, top), (x2, base), (40, 60, 85), -1)
        mid = (x1 + x2) // 2
        cv2.line(img, (mid, top), (mid, base), (25, 40, 60), 2)
        cv2.circle(img, (mid + 6, top + door_h // 2), 3, (120, 160, 190), -1)
    else:  # parking: a booth at the entrance
        cv2.rectangle(img, (x1, top), (x2, base), (170, 175, 180), -1)
        cv2.rectangle(img, (x1 + 6, top + 8), (x2 - 6, top + door_h // 2), (90, 80, 60), -1)


def _draw_markings(img: Image, geo: SceneGeometry, w: int, h: int, base: int) -> None:
    if geo.layout == "parking":
        vanish = (w * 0.5, base - h * 0.6)
        for i in range(-3, 9):
            xb = w * (0.05 + i * 0.14)
            t = (base + 4 - vanish[1]) / (h - vanish[1])
            xt = vanish[0] + (xb - vanish[0]) * t
            cv2.line(img, (round(xt), base + 4), (round(xb), h), (215, 215, 210), 3, cv2.LINE_AA)
        zone = np.array([(x * w, y * h) for x, y in geo.zone], np.int32)
        cv2.polylines(img, [zone], True, (40, 200, 230), 3, cv2.LINE_AA)  # yellow hatched bay
    else:
        kerb = round(base + h * 0.012)
        cv2.line(img, (0, kerb), (w, kerb), (150, 155, 160), 3)


def _draw_lamps(img: Image, geo: SceneGeometry, w: int, h: int, base: int) -> list[tuple[int, int]]:
    heads = []
    for fx in geo.lamps:
        x = round(fx * w)
        pole_h = round(person_height(base, h) * 2.2)
        top = base - pole_h
        cv2.line(img, (x, base), (x, top), (50, 52, 55), max(2, w // 320))
        cv2.line(img, (x, top), (x + w // 60, top), (50, 52, 55), max(2, w // 400))
        cv2.ellipse(img, (x + w // 60, top + 3), (w // 120, 4), 0, 0, 360, (200, 220, 230), -1)
        heads.append((x + w // 60, top + 6))
    return heads


@dataclass(frozen=True, slots=True)
class Background:
    image: Image  # day-lit BGR
    night_image: Image  # the same at night: image * light + glow
    light: FloatImage  # multiplicative night light map (HxWx3), lamps bright, rest dim
    glow: FloatImage  # additive lamp glare (HxWx3)
    geometry: SceneGeometry


def build_background(layout: Layout, size: tuple[int, int], seed: int) -> Background:
    """A static background for ``layout`` at ``size`` (width, height), plus night lighting maps."""
    w, h = size
    rng = np.random.default_rng(seed)
    geo = GEOMETRY[layout]
    base = round(BASE_Y * h)
    img = _ground(w, h, base)
    img[:base] = _wall(w, base, layout, rng)
    _draw_door(img, geo, w, h, base)
    _draw_markings(img, geo, w, h, base)
    heads = _draw_lamps(img, geo, w, h, base)
    # mild vignette, as from a cheap wide-angle lens
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    vignette = (1.0 - 0.18 * r2)[..., None]
    img = np.clip(img.astype(np.float32) * vignette, 0, 255).astype(np.uint8)
    # night: dim ambient plus a pool of light below each lamp, door light
    light = np.full((h, w), 0.13, np.float32)
    glow = np.zeros((h, w), np.float32)
    for x, y in heads:
        pool = np.exp(-(((xx - x) / (0.16 * w)) ** 2 + ((yy - (y + 0.35 * h)) / (0.3 * h)) ** 2))
        light += 0.75 * pool
        glow += 140.0 * np.exp(-(((xx - x) ** 2 + (yy - y) ** 2) / (2 * (0.012 * w) ** 2)))
    dx = (geo.door[0] + geo.door[1]) / 2 * w
    light += 0.45 * np.exp(-(((xx - dx) / (0.12 * w)) ** 2 + ((yy - base) / (0.22 * h)) ** 2))
    tint = np.array([1.08, 0.98, 0.85], np.float32)  # sodium-free, slightly blue night
    light3 = np.clip(light, 0, 1.2)[..., None] * tint
    glow3 = np.repeat(glow[..., None], 3, axis=2) * np.array([0.85, 0.95, 1.0], np.float32)
    light3 = light3.astype(np.float32)
    glow3 = glow3.astype(np.float32)
    night = np.clip(img.astype(np.float32) * light3 + glow3, 0, 255).astype(np.uint8)
    grey = cv2.cvtColor(cv2.cvtColor(night, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    night = u8(cv2.addWeighted(night, 0.35, grey, 0.65, 0.0))  # little colour in the dark
    return Background(img, night, light3, glow3, geo)
