"""One hub trial, run in its own process: N RTSP cameras through the hub's real pipeline.

``python -m benchmarks.hub_trial '<HubTrialSpec as JSON>'`` runs, in this one process and on one
asyncio loop, exactly what ``hub run`` wires: a :class:`streams.reader.StreamReader` per camera,
the :class:`detectors.analyzer.Analyzer` (motion gating, batched inference, tracking, zone rules)
on the configured backend, and — when a database URL is given — the real alerts path
(:class:`alerts.engine.AlertEngine` writing rule hits, alerts and incidents to PostgreSQL and
evidence JPEGs to disk). Phases:

1. connect: wait until every reader has decoded a frame;
2. decode only (``decode_s``): readers alone, to measure the decode CPU per camera — first
   decoding every frame, then (``idle_keyframes``) key frames only, as idle cameras do;
3. warm-up (``warmup_s``): analyzer and alert engine running, not measured;
4. window (``duration_s``): everything measured.

Phase changes are printed as ``PHASE <name> <time>`` (the parent samples the RTSP server's CPU
on them); the last line is ``RESULT <json>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmarks.measure import CpuSnapshot, percentile, process_cpu_s, thread_cpu_s, thread_groups
from hub.bus import TOPIC_DETECTIONS, TOPIC_RULE_HIT, Bus
from hub.config import (
    BatchConfig,
    CameraConfig,
    DetectSection,
    MotionConfig,
    OnnxRuntimeBackend,
    TrackerConfig,
    UltralyticsBackend,
    ZoneConfig,
)
from hub.metrics import Metrics

log = logging.getLogger(__name__)

FALL_LABELS = ["normal", "fall"]  # the fall YOLOv8s' classes: every person is one of them
_THREADS = {"stream-": "decode threads (PyAV, one per camera)", "infer": "inference thread (ONNX/torch call)",
            "MainThread": "event loop (gating, tracking, rules, alerts)",
            "asyncio_": "asyncio executor (evidence JPEGs)"}
_NATIVE = "native pools (FFmpeg slice threads, ONNX Runtime/torch intra-op)"


@dataclass
class HubTrialSpec:
    urls: list[str]
    model: str
    backend: Literal["onnxruntime", "ultralytics"] = "onnxruntime"
    imgsz: int = 320
    fps: float = 5.0
    width: int = 640
    motion: bool = True
    batch: int = 8
    connect_timeout_s: float = 20.0
    decode_s: float = 5.0
    warmup_s: float = 5.0
    duration_s: float = 30.0
    database_url: str | None = None  # None: no alerts path; latency proxy = rule hit published
    zone_cooldown_s: float = 5.0
    confidence: float = 0.25  # the fall model scores people in these night scenes at ~0.3-0.5
    track_high: float = 0.3  # ByteTrack first-association threshold (default 0.5 never starts tracks here)
    ort_threads: int = 0  # onnxruntime intra-op threads (0 = the backend's default)
    idle_keyframes: bool = True  # quiet cameras decode key frames only (motion.idle_keyframes)
    idle_after_s: float = 3.0
    threads: int = 1  # inference worker threads (detect.threads)
    decode_threads: int = 1  # StreamReader decode_threads
    decode_nice: int = 10  # StreamReader decode_nice


@dataclass
class _Recorder:
    """Latency samples (seconds) taken while ``on`` is set."""

    on: bool = False
    samples: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        if self.on:
            self.samples.append(value)

    def summary(self) -> dict[str, float | int | None]:
        s = self.samples
        return {"count": len(s), "p50": percentile(s, 50), "p95": percentile(s, 95),
                "max": max(s) if s else None}


class _LatencyHistogram:
    """Stands in for ``Metrics.latency``: forwards to the Prometheus histogram and records samples."""

    def __init__(self, inner: Any, recorder: _Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    def observe(self, amount: float) -> None:
        self._inner.observe(amount)
        self._recorder.add(amount)


def _config(spec: HubTrialSpec) -> tuple[DetectSection, list[CameraConfig]]:
    backend: OnnxRuntimeBackend | UltralyticsBackend
    if spec.backend == "onnxruntime":
        backend = OnnxRuntimeBackend(model=Path(spec.model), imgsz=spec.imgsz, confidence=spec.confidence,
                                     intra_threads=spec.ort_threads)
    else:
        backend = UltralyticsBackend(model=Path(spec.model), imgsz=spec.imgsz, confidence=spec.confidence)
    detect = DetectSection(fps=spec.fps, width=spec.width, backend=backend, labels=FALL_LABELS,
                           motion=MotionConfig(enabled=spec.motion, idle_keyframes=spec.idle_keyframes,
                                               idle_after_s=spec.idle_after_s),
                           batch=BatchConfig(max_size=spec.batch), threads=spec.threads,
                           tracker=TrackerConfig(high_threshold=spec.track_high))
    whole = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    cameras = [
        CameraConfig(id=f"cam{i + 1:02d}", url=url, zones=[
            ZoneConfig(id="street", polygon=whole, labels=FALL_LABELS, min_dwell_s=1.0,
                       cooldown_s=spec.zone_cooldown_s)])
        for i, url in enumerate(spec.urls)
    ]
    return detect, cameras


def _snapshot() -> CpuSnapshot:
    return CpuSnapshot(time.monotonic(), process_cpu_s(), thread_cpu_s())


def _thread_breakdown(a: CpuSnapshot, b: CpuSnapshot, groups: dict[int, str]) -> dict[str, float]:
    """Cores used per thread group between two snapshots."""
    wall = max(1e-6, b.wall - a.wall)
    out: dict[str, float] = {}
    for tid, cpu in b.threads.items():
        group = groups.get(tid, _NATIVE)
        out[group] = out.get(group, 0.0) + (cpu - a.threads.get(tid, 0.0)) / wall
    return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _phase(name: str) -> None:
    print(f"PHASE {name} {time.time():.3f}", flush=True)


async def _consume(bus: Bus, topic: str, recorder: _Recorder, captured: Callable[[Any], float]) -> None:
    async with bus.subscription(topic, maxsize=100_000) as sub:
        while True:
            _, msg = await sub.get()
            recorder.add(time.time() - captured(msg))


async def _loop_lag(recorder: _Recorder, period: float = 0.1) -> None:
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(period)
        recorder.add(loop.time() - t - period)


async def _idle_share(readers: dict[str, Any], samples: list[float], period: float = 0.2) -> None:
    """Samples the share of cameras decoding key frames only."""
    while True:
        samples.append(sum(1 for r in readers.values() if r.idle) / max(1, len(readers)))
        await asyncio.sleep(period)


async def run_trial(spec: HubTrialSpec) -> dict[str, Any]:
    from detectors.analyzer import Analyzer
    from detectors.backends import load_backend
    from streams.reader import StreamReader

    detect, cameras = _config(spec)
    bus = Bus()
    metrics = Metrics()
    incident_lat = _Recorder()
    metrics.latency = _LatencyHistogram(metrics.latency, incident_lat)  # type: ignore[assignment]
    result_lat, hit_lat, lag = _Recorder(), _Recorder(), _Recorder()
    t_load = time.monotonic()
    backend = await asyncio.to_thread(load_backend, detect.backend)
    load_s = time.monotonic() - t_load
    readers = {c.id: StreamReader(c.id, c.url, width=detect.width, fps=detect.fps, transport="tcp",
                                  decode_threads=spec.decode_threads, decode_nice=spec.decode_nice)
               for c in cameras}
    analyzer = Analyzer(detect, cameras, backend, bus, metrics=metrics)
    out: dict[str, Any] = {"cameras": len(cameras), "backend": backend.name, "model_load_s": round(load_s, 2),
                           "alerts_path": spec.database_url is not None}
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(backend.close)
        engine = None
        if spec.database_url is not None:
            engine = await _alerts(stack, spec.database_url, cameras, bus=bus, metrics=metrics,
                                   analyzer=analyzer)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(r.run(), name=f"reader:{cid}") for cid, r in readers.items()]
            tasks.append(tg.create_task(
                _consume(bus, TOPIC_DETECTIONS, result_lat, lambda m: m.frame.captured_at)))
            tasks.append(tg.create_task(_consume(bus, TOPIC_RULE_HIT, hit_lat, lambda m: m.captured_at)))
            tasks.append(tg.create_task(_loop_lag(lag)))
            _phase("connect")
            deadline = time.monotonic() + spec.connect_timeout_s
            while not all(r.stats.decoded for r in readers.values()) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls thread-written counters
                await asyncio.sleep(0.1)
            out["online_at_start"] = sum(1 for r in readers.values() if r.stats.decoded)
            await asyncio.sleep(1.0)  # let the first GOPs settle
            _phase("decode")
            d0 = _snapshot()
            dec0 = {cid: r.stats.decoded for cid, r in readers.items()}
            await asyncio.sleep(spec.decode_s)
            d1 = _snapshot()
            out["decode_only"] = {
                "cores_total": round((d1.process - d0.process) / (d1.wall - d0.wall), 3),
                "cores_per_camera": round((d1.process - d0.process) / (d1.wall - d0.wall) / len(readers), 4),
                "decoded_fps_min": round(min((r.stats.decoded - dec0[cid]) / (d1.wall - d0.wall)
                                             for cid, r in readers.items()), 2),
            }
            if spec.idle_keyframes and spec.motion:
                for r in readers.values():
                    r.set_idle(True)
                await asyncio.sleep(1.0)  # every decoder is past a key frame
                i0 = _snapshot()
                dec0 = {cid: r.stats.decoded for cid, r in readers.items()}
                await asyncio.sleep(spec.decode_s)
                i1 = _snapshot()
                out["decode_only"]["idle_cores_per_camera"] = round(
                    (i1.process - i0.process) / (i1.wall - i0.wall) / len(readers), 4)
                out["decode_only"]["idle_decoded_fps_max"] = round(
                    max((r.stats.decoded - dec0[cid]) / (i1.wall - i0.wall) for cid, r in readers.items()), 2)
                for r in readers.values():
                    r.set_idle(False)  # the analyzer decides from here on
            tasks.append(tg.create_task(analyzer.run(readers), name="analyzer"))
            if engine is not None:
                tasks.append(tg.create_task(engine.run(), name="alerts"))
            _phase("warmup")
            await asyncio.sleep(spec.warmup_s)
            before = _window_counters(readers, analyzer)
            for rec in (result_lat, hit_lat, lag, incident_lat):
                rec.on = True
            idle_samples: list[float] = []
            tasks.append(tg.create_task(_idle_share(readers, idle_samples)))
            _phase("window")
            w0 = _snapshot()
            await asyncio.sleep(spec.duration_s)
            w1 = _snapshot()
            groups = thread_groups(_THREADS)  # while the threads are alive
            for rec in (result_lat, hit_lat, lag, incident_lat):
                rec.on = False
            after = _window_counters(readers, analyzer)
            out["idle_share"] = round(sum(idle_samples) / len(idle_samples), 3) if idle_samples else 0.0
            _phase("end")
            for task in tasks:
                task.cancel()
    wall = w1.wall - w0.wall
    out.update(_summarise(before, after, wall, spec.fps))
    out["cpu_cores"] = round((w1.process - w0.process) / wall, 3)
    out["threads"] = _thread_breakdown(w0, w1, groups)
    out["latency"] = {"result": result_lat.summary(), "rule_hit": hit_lat.summary(),
                      "incident": incident_lat.summary(), "loop_lag": lag.summary()}
    out["window_s"] = round(wall, 2)
    return out


async def _alerts(stack: contextlib.AsyncExitStack, url: str, cameras: list[CameraConfig], *,
                  bus: Bus, metrics: Metrics, analyzer: Any) -> Any:
    from alerts.engine import AlertEngine
    from alerts.evidence import EvidenceStore
    from hub.config import AlertsSection
    from hub.storage import Database

    db = await stack.enter_async_context(Database(url, timescaledb="off", metrics=metrics))
    evidence_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-evidence-")))

    def frames(camera_id: str) -> Any:
        res = analyzer.last_result(camera_id)
        return (res.frame, res.detections) if res is not None else None

    evidence = EvidenceStore(evidence_dir, frames)
    return AlertEngine(AlertsSection(), cameras, [], bus, db, evidence, metrics=metrics, force_night=True)


def _window_counters(readers: dict[str, Any], analyzer: Any) -> dict[str, Any]:
    st = analyzer.stats
    cams = {}
    for cid, r in readers.items():
        c = st.camera(cid)
        cams[cid] = {"decoded": r.stats.decoded, "sampled": r.stats.sampled, "dropped": r.stats.dropped,
                     "not_decoded": r.stats.not_decoded, "idle_skipped": r.stats.idle_skipped,
                     "reconnects": r.stats.reconnects, "analysed": c.analysed, "gated": c.motion_skipped,
                     "inferred": c.inferred, "skipped": c.skipped, "hits": c.hits}
    return {"cams": cams, "infer_calls": st.infer_calls, "frames_inferred": st.frames_inferred,
            "infer_seconds": st.infer_seconds, "infer_errors": st.infer_errors}


def _summarise(a: dict[str, Any], b: dict[str, Any], wall: float, fps: float) -> dict[str, Any]:
    per_cam: dict[str, dict[str, float]] = {}
    for cid, end in b["cams"].items():
        start = a["cams"][cid]
        d = {k: end[k] - start[k] for k in end}
        per_cam[cid] = {
            "analysed_fps": round(d["analysed"] / wall, 2),
            # frames analysed plus the sample ticks an idle camera skipped on purpose
            "covered_fps": round((d["analysed"] + d["idle_skipped"]) / wall, 2),
            "decoded_fps": round(d["decoded"] / wall, 2),
            # packets taken off the stream (decoded or skipped on purpose): below 25 fps = backlog
            "consumed_fps": round((d["decoded"] + d["not_decoded"]) / wall, 2),
            "idle_skipped": d["idle_skipped"], "not_decoded": d["not_decoded"],
            "sampled": d["sampled"], "analysed": d["analysed"], "gated": d["gated"],
            "inferred": d["inferred"],
            # sampled frames no analysis ever saw: overwritten in the reader's slot, or discarded
            # from the analyzer's backlog (its seq-gap count covers both); planned idle skips
            # are not among them (the reader never produced those frames)
            "dropped": max(d["dropped"], d["skipped"]), "reader_dropped": d["dropped"],
            "skipped": d["skipped"], "reconnects": d["reconnects"],
            "hits": d["hits"],
        }
    analysed = sum(c["analysed"] for c in per_cam.values())
    gated = sum(c["gated"] for c in per_cam.values())
    sampled = sum(c["sampled"] for c in per_cam.values())
    calls = b["infer_calls"] - a["infer_calls"]
    inferred = b["frames_inferred"] - a["frames_inferred"]
    infer_s = b["infer_seconds"] - a["infer_seconds"]
    return {
        "target_fps": fps,
        "analysed_fps_min": min(c["analysed_fps"] for c in per_cam.values()),
        "analysed_fps_mean": round(analysed / wall / max(1, len(per_cam)), 2),
        "decoded_fps_min": min(c["decoded_fps"] for c in per_cam.values()),
        "covered_fps_min": min(c["covered_fps"] for c in per_cam.values()),
        "consumed_fps_min": min(c["consumed_fps"] for c in per_cam.values()),
        "idle_skipped": sum(c["idle_skipped"] for c in per_cam.values()),
        "frames_analysed": analysed, "frames_sampled": sampled, "frames_gated": gated,
        "frames_inferred": inferred, "infer_calls": calls,
        "infer_errors": b["infer_errors"] - a["infer_errors"],
        "mean_batch": round(inferred / calls, 2) if calls else 0.0,
        "calls_saved_gating": gated, "calls_saved_batching": inferred - calls,
        "infer_busy": round(infer_s / wall, 3),  # fraction of wall time inside infer calls
        "infer_ms_per_call": round(1000 * infer_s / calls, 1) if calls else None,
        "dropped": sum(c["dropped"] for c in per_cam.values()),
        "reconnects": sum(c["reconnects"] for c in per_cam.values()),
        "rule_hits": sum(c["hits"] for c in per_cam.values()),
        "per_camera": per_cam,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = HubTrialSpec(**json.loads(args[0]))
    result = asyncio.run(run_trial(spec))
    result["spec"] = {k: v for k, v in asdict(spec).items() if k not in ("urls", "database_url")}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
