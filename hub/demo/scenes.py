"""CCTV-like H.264 scenes with known ground truth.

``generate_scene(path, spec)`` composites person cut-outs (from package-shipped photos)
walking along scripted paths over a static background, adds camera artefacts (night
lighting, sensor noise, lens blur, rain, shake, an OSD timestamp), encodes H.264 with
PyAV/libx264 and writes the truth (:class:`~hub.demo.truth.SceneTruth`) beside the clip.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
from av.container import OutputContainer
from av.video.stream import VideoStream

from hub.demo.background import Background, FloatImage, Layout, build_background, person_height
from hub.demo.script import WALK_HEIGHTS_PER_S, Actor, plan_episodes
from hub.demo.sprites import Alpha, Image, f32, sprite_pool, u8
from hub.demo.truth import SceneTruth, TrackTruth, TruthBox, point_in_polygon, zone_intervals
from hub.errors import HubError

log = logging.getLogger(__name__)

PRESET = "ultrafast"  # x264: encoding dominates generation time; measured in the report
OSD_EPOCH = dt.datetime(2024, 11, 8, 21, 30, 0)


@dataclass(frozen=True, slots=True)
class SceneSpec:
    """What to generate. Times in seconds, sizes in pixels (width, height)."""

    seconds: float = 30.0
    fps: int = 25
    size: tuple[int, int] = (960, 540)
    layout: Layout = "courtyard"
    presence: float = 0.2  # fraction of the clip with at least one person in view
    night: bool = False
    rain: bool = False
    shake: bool = False
    seed: int = 0
    first_entry_s: float | None = None  # the first person (a zone visit) walks in at this time
    visit_share: float = 0.5  # share of people who walk to the zone and stand there
    dwell_s: tuple[float, float] = (3.0, 6.0)  # how long a visitor stands in the zone
    camera_name: str = "CAM01"
    people: int = 6  # distinct-looking people
    crf: int = 26  # x264 quality (lower = better, bigger)
    osd_start: dt.datetime = field(default=OSD_EPOCH)


NoiseFrame = tuple[Image, Image]  # (add, subtract) halves of a zero-mean noise field


def _noise_bank(size: tuple[int, int], sigma: float, rng: np.random.Generator,
                count: int = 6) -> list[NoiseFrame]:
    w, h = size
    bank = []
    for _ in range(count):
        luma = rng.normal(0, sigma, (h, w, 1))
        chroma = rng.normal(0, sigma * 0.35, (h, w, 3))
        noise = np.clip(np.round(luma + chroma), -255, 255)
        bank.append((np.maximum(noise, 0).astype(np.uint8), np.maximum(-noise, 0).astype(np.uint8)))
    return bank


def _rain_layer(size: tuple[int, int], rng: np.random.Generator) -> Image:
    w, h = size
    layer = np.zeros((2 * h, w), np.uint8)
    for _ in range(int(w * h / 900)):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, 2 * h))
        length = int(rng.integers(h // 40, h // 15))
        cv2.line(layer, (x, y), (x + length // 6, y + length), int(rng.integers(40, 110)), 1, cv2.LINE_AA)
    return u8(cv2.GaussianBlur(layer, (3, 3), 0.8))


def _paste(frame: Image, sprite: tuple[Image, Alpha], at: tuple[int, int], light: FloatImage | None) -> None:
    """Alpha-blend a sprite at (x1, y1); ``light`` (night) scales the sprite by the scene lighting."""
    bgr, alpha = sprite
    x1, y1 = at
    h, w = frame.shape[:2]
    sh, sw = alpha.shape
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x1 + sw, w), min(y1 + sh, h)
    if fx1 >= fx2 or fy1 >= fy2:
        return
    a = alpha[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1, None]
    src = bgr[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1].astype(np.float32)
    if light is not None:
        src *= light[fy1:fy2, fx1:fx2]
    dst = frame[fy1:fy2, fx1:fx2].astype(np.float32)
    frame[fy1:fy2, fx1:fx2] = (src * a + dst * (1.0 - a)).astype(np.uint8)


def _shadow(frame: Image, cx: float, feet: float, width: float, strength: float) -> None:
    h, w = frame.shape[:2]
    ax, ay = max(2, int(width * 0.6)), max(2, int(width * 0.12))
    x1, y1, x2, y2 = int(cx - ax), int(feet - ay), int(cx + ax), int(feet + ay)
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if fx1 >= fx2 or fy1 >= fy2:
        return
    mask = np.zeros((y2 - y1, x2 - x1), np.float32)
    cv2.ellipse(mask, (ax, ay), (ax, ay), 0, 0, 360, 1.0, -1)
    mask = f32(cv2.GaussianBlur(mask, (0, 0), max(1.0, ay / 2)))[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1]
    roi = frame[fy1:fy2, fx1:fx2].astype(np.float32)
    frame[fy1:fy2, fx1:fx2] = (roi * (1.0 - strength * mask[..., None])).astype(np.uint8)


def _osd(frame: Image, when: dt.datetime, camera: str) -> None:
    """White text on a dimmed band, like a DVR's on-screen display."""
    h = frame.shape[0]
    scale = h / 800
    thick = max(1, round(h / 500))
    for text, x, y in ((when.strftime("%Y-%m-%d %H:%M:%S"), round(h * 0.02), round(h * 0.055)),
                       (camera, round(h * 0.02), round(h * 0.97))):
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        band = frame[max(0, y - th - 4) : y + base + 2, max(0, x - 4) : x + tw + 4]
        band[:] = (band.astype(np.uint16) * 2 // 5).astype(np.uint8)
        cv2.putText(frame, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (240, 240, 240), thick, cv2.LINE_AA)


class _Renderer:
    def __init__(self, spec: SceneSpec, bg: Background, actors: list[Actor],
                 rng: np.random.Generator) -> None:
        self.spec = spec
        self.bg = bg
        self.actors = actors
        self.noise = _noise_bank(spec.size, 11.0 if spec.night else 3.5, rng)
        self.rain = _rain_layer(spec.size, rng) if spec.rain else None
        self.rng = rng
        self.polygon = list(bg.geometry.zone)
        self._cache: dict[tuple[int, int, bool], tuple[Image, Alpha]] = {}

    def _sprite(self, actor: Actor, height: int, walking: bool) -> tuple[Image, Alpha]:
        """The sprite at ``height`` px; walking people get horizontal motion blur for the shutter
        time (1/50 s by day, 1/12 s at night: CCTV cameras expose longer in the dark)."""
        key = (actor.track_id, height, walking)
        if key not in self._cache:
            if len(self._cache) > 4000:
                self._cache.clear()
            bgr, alpha = actor.sprite.render(height)
            if self.spec.night:
                grey = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
                bgr = u8(cv2.addWeighted(bgr, 0.35, grey, 0.65, 0.0))
            if walking:
                shutter = 1 / 12 if self.spec.night else 1 / 50
                k = round(WALK_HEIGHTS_PER_S * height * shutter)
                if k >= 2:
                    pad = k // 2 + 1
                    bgr = u8(cv2.blur(cv2.copyMakeBorder(bgr, 0, 0, pad, pad, cv2.BORDER_REPLICATE), (k, 1)))
                    padded = cv2.copyMakeBorder(alpha, 0, 0, pad, pad, cv2.BORDER_CONSTANT, value=0)
                    alpha = f32(cv2.blur(padded, (k, 1)))
            self._cache[key] = (bgr, alpha)
        return self._cache[key]

    def frame(self, index: int) -> tuple[Image, list[TruthBox]]:
        spec = self.spec
        w, h = spec.size
        t = index / spec.fps
        img = (self.bg.night_image if spec.night else self.bg.image).copy()
        light = self.bg.light if spec.night else None
        placed: list[tuple[float, Actor, float, bool]] = []
        for actor in self.actors:
            pos = actor.at(t)
            if pos is not None:
                placed.append((pos[1], actor, pos[0], pos[2]))
        placed.sort(key=lambda p: p[0])  # far (higher up) first
        boxes: list[tuple[int, float, float, float, float]] = []
        for feet, actor, x, walking in placed:
            ph = person_height(feet, h)
            bob = 0.012 * ph * abs(np.sin(2 * np.pi * 1.8 * t)) if walking else 0.0
            bgr, alpha = self._sprite(actor, round(ph), walking)
            sh, sw = alpha.shape
            x1, y1 = round(x - sw / 2), round(feet - bob - sh)
            _shadow(img, x, feet, round(ph * actor.sprite.aspect), 0.18 if spec.night else 0.35)
            _paste(img, (bgr, alpha), (x1, y1), light)
            # the truth box is the person's extent (motion-blur padding excluded)
            pad = (sw - round(ph * actor.sprite.aspect)) / 2 if walking else 0.0
            boxes.append((actor.track_id, float(x1) + pad, float(y1), float(x1 + sw) - pad, float(y1 + sh)))
        dx = dy = 0.0
        if spec.shake:
            dx = 1.6 * np.sin(t * 7.1) + self.rng.normal(0, 0.4)
            dy = 1.2 * np.sin(t * 5.3 + 1.0) + self.rng.normal(0, 0.4)
            m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
            img = u8(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT))
        if self.rain is not None:
            off = int(index * h / (spec.fps * 0.6)) % h
            streaks = self.rain[h - off : 2 * h - off]
            img = u8(cv2.add(img, cv2.cvtColor(streaks, cv2.COLOR_GRAY2BGR)))
        plus, minus = self.noise[int(self.rng.integers(0, len(self.noise)))]
        img = u8(cv2.subtract(cv2.add(img, plus), minus))
        img = u8(cv2.GaussianBlur(img, (3, 3), 0.9))  # sensor noise, then ISP/lens softness
        _osd(img, spec.osd_start + dt.timedelta(seconds=t), spec.camera_name)
        truth = []
        for tid, ox1, oy1, ox2, oy2 in boxes:
            bx1, by1, bx2, by2 = ox1 + dx, oy1 + dy, ox2 + dx, oy2 + dy
            full = (bx2 - bx1) * (by2 - by1)
            cx1, cy1, cx2, cy2 = max(bx1, 0.0), max(by1, 0.0), min(bx2, float(w)), min(by2, float(h))
            if cx1 >= cx2 or cy1 >= cy2:
                continue
            visible = (cx2 - cx1) * (cy2 - cy1) / full
            feet_x, feet_y = (bx1 + bx2) / 2 / w, by2 / h
            in_zone = point_in_polygon(feet_x, feet_y, self.polygon)
            truth.append(TruthBox(tid, (cx1, cy1, cx2, cy2), visible, in_zone))
        return img, truth


def _open_encoder(path: Path, spec: SceneSpec) -> tuple[OutputContainer, VideoStream]:
    out = av.open(str(path), "w", format="mp4")
    stream = out.add_stream("libx264", rate=spec.fps)
    stream.width, stream.height = spec.size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = spec.fps  # a keyframe every second: quick start for live viewers
    stream.codec_context.max_b_frames = 0
    stream.options = {"preset": PRESET, "crf": str(spec.crf), "sc_threshold": "0", "profile": "main"}
    return out, stream


def generate_scene(path: Path, spec: SceneSpec) -> SceneTruth:
    """Write ``path`` (H.264 .mp4) and ``path.with_suffix('.json')`` (ground truth); return the truth."""
    w, h = spec.size
    if w % 2 or h % 2:
        raise HubError(f"scene size must be even for yuv420p, got {w}x{h}")
    started = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    bg = build_background(spec.layout, spec.size, spec.seed)
    sprites = sprite_pool(rng, spec.people)
    actors = plan_episodes(seconds=spec.seconds, presence=spec.presence, geo=bg.geometry, size=spec.size,
                           sprites=sprites, rng=rng, visit_share=spec.visit_share, dwell_s=spec.dwell_s,
                           first_entry_s=spec.first_entry_s)
    renderer = _Renderer(spec, bg, actors, rng)
    count = round(spec.seconds * spec.fps)
    frames: list[list[TruthBox]] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    out, stream = _open_encoder(tmp, spec)
    try:
        for i in range(count):
            img, boxes = renderer.frame(i)
            frames.append(boxes)
            vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    finally:
        out.close()
    os.replace(tmp, path)
    tracks = []
    for actor in actors:
        seen = [(i, b.in_zone) for i, boxes in enumerate(frames) for b in boxes
                if b.track_id == actor.track_id]
        if not seen:
            continue
        tracks.append(TrackTruth(actor.track_id, actor.sprite.name, actor.kind, seen[0][0], seen[-1][0],
                                 zone_intervals(seen)))
    truth = SceneTruth(spec.fps, spec.size, bg.geometry.zone_id, list(bg.geometry.zone), frames, tracks)
    truth.save(path.with_suffix(".json"))
    log.info("scene %s: %d frames %dx%d in %.1f s (presence %.2f, %d people)", path.name, count, w, h,
             time.perf_counter() - started, truth.presence_fraction(), len(tracks))
    return truth


def benchmark_scene(path: Path, seconds: float, *, size: tuple[int, int] = (1280, 720), fps: int = 25,
                    presence: float = 0.2, night: bool = True, seed: int = 0) -> SceneTruth:
    """A street camera for throughput benchmarks: 720p25 at night, people present ~20 % of the time."""
    spec = SceneSpec(seconds=seconds, fps=fps, size=size, layout="parking", presence=presence, night=night,
                     seed=seed, visit_share=0.3, camera_name="BENCH-STREET")
    return generate_scene(path, spec)


def ensure_demo_media(media_dir: Path, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """The demo's clips (see :func:`hub.demo.media.ensure_demo_media`); importable from here too."""
    from hub.demo.media import ensure_demo_media as ensure

    return ensure(media_dir, progress)
