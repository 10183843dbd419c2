"""One baseline trial, in its own process: ultralytics' own multi-stream predict, as a user writes it.

``python -m benchmarks.baseline_trial '<BaselineSpec as JSON>'`` runs::

    for result in YOLO(model).predict(source="cams.streams", stream=True, vid_stride=5,
                                      imgsz=320, conf=0.35, verbose=False):
        ...

on the same RTSP streams (``.streams`` file, one URL a line). ultralytics' ``LoadStreams`` opens
one ``cv2.VideoCapture`` per stream in a thread, grabs (decodes) every frame, keeps every
``vid_stride``-th (5 fps of 25), and each iteration batches the newest frame of every stream.

Measuring hooks (they do not change the behaviour): ``cv2.VideoCapture`` is replaced by a subclass
that counts ``grab()`` calls (decoded frames) and stamps the wall time of each ``retrieve()``
(the frame left the decoder, as the hub's ``Frame.captured_at``), so result latency =
time the result is yielded − that stamp. FFmpeg is told to use RTSP over TCP, like the hub.
Phases and the result are printed like :mod:`benchmarks.hub_trial`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.measure import percentile, process_cpu_s


@dataclass
class BaselineSpec:
    urls: list[str]
    model: str  # the .pt file
    imgsz: int = 320
    conf: float = 0.25  # same confidence threshold as the hub side
    vid_stride: int = 5
    warmup_s: float = 8.0
    duration_s: float = 30.0


_stamps: dict[int, float] = {}  # id(frame array) -> wall time it left retrieve()
_grabs: dict[int, int] = defaultdict(int)  # capture index -> frames grabbed
_lock = threading.Lock()


def _install_hooks() -> None:
    import cv2

    base = cv2.VideoCapture
    counter = iter(range(1_000_000))

    class TimedCapture(base):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.bench_index = next(counter)

        def grab(self) -> bool:
            ok = bool(super().grab())
            _grabs[self.bench_index] += 1
            return ok

        def retrieve(self, *args: Any) -> Any:
            ok, image = super().retrieve(*args)
            if image is not None:
                now = time.time()
                with _lock:
                    _stamps[id(image)] = now
                    if len(_stamps) > 10_000:  # forget frames that were overwritten, never predicted
                        for key in [k for k, t in _stamps.items() if now - t > 30]:
                            del _stamps[key]
            return ok, image

    cv2.VideoCapture = TimedCapture  # type: ignore[misc,assignment]


def run_trial(spec: BaselineSpec) -> dict[str, Any]:
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
    _install_hooks()
    from ultralytics import YOLO  # type: ignore[attr-defined]

    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        streams = Path(tmp) / "cams.streams"
        streams.write_text("\n".join(spec.urls) + "\n")
        t0 = time.monotonic()
        model = YOLO(spec.model)
        load_s = time.monotonic() - t0
        print(f"PHASE connect {time.time():.3f}", flush=True)
        counts: dict[str, int] = defaultdict(int)
        latencies: list[float] = []
        unstamped = 0
        phase = "warmup"
        start = time.monotonic()
        w0 = w1 = 0.0
        c0 = c1 = 0.0
        g0: dict[int, int] = {}
        g1: dict[int, int] = {}
        counts0: dict[str, int] = {}
        result: Any
        for result in model.predict(source=str(streams), stream=True, vid_stride=spec.vid_stride,
                                    imgsz=spec.imgsz, conf=spec.conf, verbose=False):
            now_wall = time.time()
            now = time.monotonic()
            counts[result.path] += 1
            with _lock:
                stamp = _stamps.pop(id(result.orig_img), None)
            if phase == "warmup" and now - start >= spec.warmup_s:
                phase = "window"
                print(f"PHASE window {now_wall:.3f}", flush=True)
                w0, c0, g0, counts0 = now, process_cpu_s(), dict(_grabs), dict(counts)
            elif phase == "window":
                if stamp is not None:
                    latencies.append(now_wall - stamp)
                else:
                    unstamped += 1
                if now - w0 >= spec.duration_s:
                    w1, c1, g1 = now, process_cpu_s(), dict(_grabs)
                    print(f"PHASE end {time.time():.3f}", flush=True)
                    break
    if not w1:
        raise RuntimeError("the predict loop ended before the measuring window closed")
    wall = w1 - w0
    paths = sorted(counts)
    fps = {p: round((counts[p] - counts0.get(p, 0)) / wall, 2) for p in paths}
    decoded = {i: round((g1.get(i, 0) - g0.get(i, 0)) / wall, 2) for i in sorted(g1)}
    return {
        "cameras": len(spec.urls), "model_load_s": round(load_s, 2), "streams_seen": len(paths),
        "target_fps": 25 / spec.vid_stride,
        "analysed_fps_min": min(fps.values()) if len(fps) == len(spec.urls) else 0.0,
        "analysed_fps_mean": round(sum(fps.values()) / max(1, len(spec.urls)), 2),
        "decoded_fps_min": min(decoded.values()) if decoded else 0.0,
        "frames_inferred": sum(counts[p] - counts0.get(p, 0) for p in paths),
        "cpu_cores": round((c1 - c0) / wall, 3),
        "latency": {"result": {"count": len(latencies), "p50": percentile(latencies, 50),
                               "p95": percentile(latencies, 95), "max": max(latencies) if latencies else None,
                               "unstamped": unstamped}},
        "per_stream_fps": fps, "window_s": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = BaselineSpec(**json.loads(args[0]))
    result = run_trial(spec)
    result["spec"] = {k: v for k, v in asdict(spec).items() if k != "urls"}
    print("RESULT " + json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # LoadStreams' reader threads may sit in a blocking read; don't wait for them


if __name__ == "__main__":
    sys.exit(main())
