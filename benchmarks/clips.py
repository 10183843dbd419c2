"""Benchmark camera clips: scripted night street scenes, capped to a camera bitrate, one per camera.

1. :func:`hub.demo.scenes.benchmark_scene` renders a few distinct 720p25 night scenes
   (people present ~20 % of the time) with ground truth. These are cached: rendering is slow.
2. Each scene is re-encoded once like a real camera encoder would (H.264 main, 1 s GOP,
   no B-frames, capped bitrate). The raw render is noise-heavy (~7 Mbit/s at crf 26), far
   above what a 720p street camera sends (1-4 Mbit/s); ``bitrate_kbps=0`` keeps it as is.
3. Every camera gets its own *rotated* copy (remuxed to start at a different key frame, no
   re-encoding), so cameras sharing a scene are not in lock-step (people appear at different
   times on different cameras, like a real street).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from hub.demo.scenes import benchmark_scene
from hub.demo.truth import SceneTruth

log = logging.getLogger(__name__)

GOP = 25  # one key frame per second at 25 fps


@dataclass(frozen=True, slots=True)
class CameraClip:
    """The file one camera streams, and facts about it."""

    camera_id: str
    path: Path
    scene: Path  # the rendered scene it was made from
    offset_s: int  # where in the scene the clip starts
    presence: float  # fraction of frames with a person in view (ground truth)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def scene_path(cache_dir: Path, seed: int, seconds: int) -> Path:
    return cache_dir / f"street_seed{seed}_{seconds}s.mp4"


def ensure_scene(cache_dir: Path, seed: int, seconds: int) -> tuple[Path, float]:
    """Render (once) a 720p25 night street scene; returns (path, presence fraction)."""
    path = scene_path(cache_dir, seed, seconds)
    truth_path = path.with_suffix(".json")
    if path.is_file() and truth_path.is_file():
        return path, SceneTruth.load(truth_path).presence_fraction()
    log.info("rendering benchmark scene %s (%d s of 720p25; slow, cached afterwards)", path.name, seconds)
    cache_dir.mkdir(parents=True, exist_ok=True)
    truth = benchmark_scene(path, float(seconds), seed=seed)
    return path, truth.presence_fraction()


def ensure_capped(scene: Path, bitrate_kbps: int) -> Path:
    """Re-encode ``scene`` once at a camera-like bitrate (``0`` = use the scene as rendered)."""
    if bitrate_kbps <= 0:
        return scene
    dst = scene.with_name(f"{scene.stem}_{bitrate_kbps}k.mp4")
    if dst.is_file():
        return dst
    log.info("re-encoding %s at %d kbit/s (camera-like, 1 s GOP, no B-frames)", scene.name, bitrate_kbps)
    tmp = _tmp(dst)
    with av.open(str(scene)) as inp, av.open(str(tmp), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or Fraction(25, 1)
        stream = out.add_stream("libx264", rate=rate)
        stream.width = vin.codec_context.width
        stream.height = vin.codec_context.height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate_kbps * 1000
        stream.codec_context.gop_size = GOP
        stream.codec_context.max_b_frames = 0
        stream.options = {"preset": "veryfast", "profile": "main", "sc_threshold": "0",
                          "maxrate": f"{int(bitrate_kbps * 1.25)}k", "bufsize": f"{bitrate_kbps * 2}k"}
        for i, frame in enumerate(inp.decode(vin)):
            frame.pts = i
            frame.time_base = Fraction(1, 1) / rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    os.replace(tmp, dst)
    return dst


def rotated(src: Path, offset_s: int, dst: Path) -> Path:
    """Copy ``src`` starting at the key frame nearest ``offset_s`` and wrapping around (remux only)."""
    if offset_s == 0:
        return src
    if dst.is_file():
        return dst
    tmp = _tmp(dst)
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        packets = [p for p in inp.demux(vin) if p.size > 0]
        rate = float(vin.average_rate or 25)
        keys = [i for i, p in enumerate(packets) if p.is_keyframe]
        want = round(offset_s * rate)
        start = min(keys, key=lambda k: abs(k - want)) if keys else 0
        order = packets[start:] + packets[:start]
        step = round(1 / (rate * float(vin.time_base))) if vin.time_base else 1
        with av.open(str(tmp), "w", format="mp4") as out:
            vout = out.add_stream_from_template(vin)
            for i, packet in enumerate(order):
                packet.stream = vout
                packet.pts = packet.dts = i * step
                packet.duration = step
                out.mux(packet)
    os.replace(tmp, dst)
    return dst


def prepare_clips(cache_dir: Path, cameras: int, *, scenes: int = 2, seconds: int = 60,
                  bitrate_kbps: int = 2000) -> list[CameraClip]:
    """One clip per camera (``cam01``...): ``scenes`` rendered scenes, rotated per camera."""
    bases: list[tuple[Path, Path, float]] = []
    for seed in range(1, scenes + 1):
        scene, presence = ensure_scene(cache_dir, seed, seconds)
        bases.append((scene, ensure_capped(scene, bitrate_kbps), presence))
    clips: list[CameraClip] = []
    for i in range(cameras):
        scene, capped, presence = bases[i % len(bases)]
        offset = (i // len(bases) * 23) % seconds  # 23 is coprime with typical lengths: spread starts
        path = rotated(capped, offset, capped.with_name(f"{capped.stem}_off{offset}.mp4"))
        clips.append(CameraClip(f"cam{i + 1:02d}", path, scene, offset, presence))
    return clips
