"""Camera-scaling benchmark: how many 720p25 RTSP cameras one hub analyses at 5 fps on 2 cores.

    YOLO_OFFLINE=1 .venv/bin/python -m benchmarks.cameras            # ~15 min (make bench)
    YOLO_OFFLINE=1 .venv/bin/python -m benchmarks.cameras --quick    # ~3 min smoke run

A real RTSP server (GStreamer, its own process) streams one scripted night street scene per
camera. The hub side runs the hub's real pipeline in one process (StreamReaders, Analyzer with
motion gating and batching, the fall YOLOv8s on ONNX Runtime, zone rules, and the alerts path
into PostgreSQL); the baseline runs ultralytics' own multi-stream ``predict`` with the same model
on the same streams. For each, a stepped search finds the largest camera count that keeps up.
Prints markdown tables and writes them into docs/performance.md. Method: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks.clips import CameraClip, prepare_clips, scene_path
from benchmarks.measure import load_average, machine_description
from benchmarks.report import (
    RESULTS_BEGIN,
    RESULTS_END,
    Summary,
    baseline_table,
    hub_table,
    where_time_goes,
)
from benchmarks.search import Search, baseline_throughput_only, baseline_verdict, hub_verdict
from benchmarks.trial import ROOT, run_child

log = logging.getLogger("benchmarks.cameras")

DOCS = ROOT / "docs" / "performance.md"
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/test"


def _steps(text: str, limit: int) -> list[int]:
    return sorted({n for n in (int(v) for v in text.split(",") if v.strip()) if 0 < n <= limit})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cameras", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="Smoke run: short windows, few steps (~3 min).")
    p.add_argument("--max-cameras", type=int, default=24, help="Largest camera count tried (default 24).")
    p.add_argument("--duration", type=float, help="Measured seconds per trial (default 30; quick 10).")
    p.add_argument("--hub-steps", default="2,4,8,12,16,20,24", help="Camera counts tried for the hub.")
    p.add_argument("--baseline-steps", default="1,2,3,4,6,8,12", help="Camera counts tried for the baseline.")
    p.add_argument("--scenes", type=int, default=2, help="Distinct rendered scenes (rotated per camera).")
    p.add_argument("--clip-seconds", type=int, help="Scene length (default 60; quick: 20 unless cached).")
    p.add_argument("--bitrate", type=int, default=2000, help="Camera bitrate in kbit/s (0 = as rendered).")
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".hub-state-bench",
                   help="Rendered scenes and the exported ONNX model are cached here.")
    p.add_argument("--backend", choices=["onnxruntime", "ultralytics"], default="onnxruntime",
                   help="Hub detector backend for the fall YOLOv8s.")
    p.add_argument("--ort-threads", type=int, default=0,
                   help="ONNX Runtime intra-op threads (0 = the hub backend's default).")
    p.add_argument("--infer-threads", type=int, default=1,
                   help="Hub inference worker threads (detect.threads).")
    p.add_argument("--batch", type=int, default=8,
                   help="Hub: frames per inference call (detect.batch.max_size).")
    p.add_argument("--no-idle", action="store_true",
                   help="Hub: quiet cameras keep decoding every frame (motion.idle_keyframes off).")
    p.add_argument("--decode-threads", type=int, default=1, help="Hub: slice threads per decoder.")
    p.add_argument("--decode-nice", type=int, default=10, help="Hub: decode threads' nice increment.")
    p.add_argument("--database-url", default=os.environ.get("HUB_DATABASE_URL", DEFAULT_DB),
                   help="PostgreSQL for the alerts path (a temporary schema is created and dropped).")
    p.add_argument("--no-alerts", action="store_true", help="Skip the alerts path (latency to rule hit).")
    p.add_argument("--all-steps", action="store_true",
                   help="Hub: try every step even after a failure (shows how the costs scale).")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--skip-hub", action="store_true")
    p.add_argument("--no-docs", action="store_true", help="Don't rewrite docs/performance.md.")
    p.add_argument("--json", type=Path, help="Also write every trial's raw result here.")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = args.duration or 10.0
        if args.hub_steps == p.get_default("hub_steps"):
            args.hub_steps = "2,6,12"
        if args.baseline_steps == p.get_default("baseline_steps"):
            args.baseline_steps = "1,2,4"
    args.duration = args.duration or 30.0
    if args.clip_seconds is None:
        cached = all(scene_path(args.cache_dir / "clips", s, 60).is_file() for s in range(1, args.scenes + 1))
        args.clip_seconds = 20 if args.quick and not cached else 60
    return args


@contextlib.contextmanager
def alerts_schema(url: str | None) -> Iterator[str | None]:
    """A fresh schema in ``url`` for the alerts path (dropped afterwards); None if unreachable."""
    if url is None:
        yield None
        return
    try:
        import psycopg

        schema = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:  # no PostgreSQL here: measure up to the rule hit instead
        log.warning("no PostgreSQL for the alerts path (%s); latency is measured to the rule hit", exc)
        yield None
        return
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with contextlib.suppress(Exception), psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run(args: argparse.Namespace) -> dict[str, Any]:
    from detectors.models import ensure_fall_onnx, fall_model_pt
    from tests.support.rtsp import RtspServer

    started = time.monotonic()
    hub_steps = _steps(args.hub_steps, args.max_cameras)
    base_steps = _steps(args.baseline_steps, args.max_cameras)
    most = max(hub_steps + base_steps)
    clips = prepare_clips(args.cache_dir / "clips", most, scenes=args.scenes, seconds=args.clip_seconds,
                          bitrate_kbps=args.bitrate)
    pt = fall_model_pt()
    onnx = args.backend == "onnxruntime"
    model = str(ensure_fall_onnx(args.cache_dir / "models", 320)) if onnx else str(pt)
    info: dict[str, Any] = {"machine": machine_description(), "load_at_start": load_average(),
                            "presence": sorted({round(c.presence, 3) for c in clips})}
    log.info("machine: %s; load average %s", info["machine"], info["load_at_start"])
    mounts = {c.camera_id: c.path for c in clips}
    with RtspServer(mounts, ready_timeout=120) as server, \
            alerts_schema(None if args.no_alerts else args.database_url) as db_url:
        urls = [server.url(c.camera_id) for c in clips]
        info["alerts_path"] = db_url is not None
        timeout = args.duration + 120

        def hub_trial(n: int) -> dict[str, Any]:
            spec = {"urls": urls[:n], "model": model, "backend": args.backend, "duration_s": args.duration,
                    "decode_s": 3.0 if args.quick else 5.0, "warmup_s": 3.0 if args.quick else 5.0,
                    "database_url": db_url, "ort_threads": args.ort_threads,
                    "threads": args.infer_threads, "idle_keyframes": not args.no_idle, "batch": args.batch,
                    "decode_threads": args.decode_threads, "decode_nice": args.decode_nice}
            return run_child("benchmarks.hub_trial", spec, server_pid=server.pid, timeout_s=timeout)

        def baseline_trial(n: int) -> dict[str, Any]:
            spec = {"urls": urls[:n], "model": str(pt), "duration_s": args.duration,
                    "warmup_s": 5.0 if args.quick else 8.0}
            return run_child("benchmarks.baseline_trial", spec, server_pid=server.pid, timeout_s=timeout)

        hub = Search(hub_steps, hub_trial, hub_verdict, max_refine=0 if args.quick or args.all_steps else 2,
                     all_steps=args.all_steps)
        hub_best = 0 if args.skip_hub else hub.run()
        base = Search(base_steps, baseline_trial, baseline_verdict, max_refine=0 if args.quick else 1)
        base_best = 0 if args.skip_baseline else base.run()
    lenient = max([n for n, r in base.results.items() if "error" not in r and baseline_throughput_only(r)],
                  default=0)
    info["elapsed_s"] = round(time.monotonic() - started)
    return {"info": info, "summary": Summary(hub_best, base_best, lenient, hub.results, base.results),
            "clips": clips}


def render(args: argparse.Namespace, out: dict[str, Any], command: str) -> str:
    info, summary = out["info"], out["summary"]
    clips: list[CameraClip] = out["clips"]
    lines = [
        f"Run: `{command}` — {time.strftime('%Y-%m-%d %H:%M %Z')}, {info['elapsed_s']} s.",
        "",
        f"Machine: {info['machine']}. Load average (1/5/15 min) at start: "
        f"{', '.join(f'{v:.1f}' for v in info['load_at_start'])}"
        " (anything well above 0 means other work shared the cores; see the last column).",
        "",
        f"Cameras: {len(clips)} RTSP streams, 1280×720 H.264 25 fps, {args.bitrate or 'uncapped'} kbit/s, "
        f"{args.scenes} rendered night street scenes ({args.clip_seconds} s loops, people in view "
        f"{', '.join(f'{p:.0%}' for p in info['presence'])} of the time), rotated per camera. "
        f"Detect 5 fps, model fall YOLOv8s at 320, hub backend {args.backend}"
        f"{f' (intra-op threads {args.ort_threads or 1})' if args.backend == 'onnxruntime' else ''}, "
        f"{args.infer_threads} inference thread(s), batch ≤ {args.batch}, "
        f"decode {args.decode_threads} thread(s)/camera at nice "
        f"+{args.decode_nice}, idle cameras "
        f"{'decode every frame' if args.no_idle else 'decode key frames only'}; "
        f"alerts path {'on (PostgreSQL)' if info['alerts_path'] else 'off (latency to the rule hit)'}; "
        f"{args.duration:.0f} s measured per trial.",
        "",
        *summary.verdict_lines(),
        "",
        "**Hub** (one process: StreamReaders + Analyzer + AlertEngine):",
        "",
        hub_table(summary.hub_results) if summary.hub_results else "(skipped)",
        "",
        "**Baseline** (ultralytics `YOLO(best.pt).predict(source=cams.streams, stream=True, vid_stride=5, "
        "imgsz=320)`):",
        "",
        baseline_table(summary.baseline_results) if summary.baseline_results else "(skipped)",
        "",
        "Where the time goes (hub):",
        "",
        *where_time_goes(summary.hub_results, summary.hub_best),
    ]
    return "\n".join(lines) + "\n"


def write_docs(section: str) -> None:
    text = DOCS.read_text() if DOCS.is_file() else "# Performance\n"
    block = f"{RESULTS_BEGIN}\n{section}{RESULTS_END}"
    if RESULTS_BEGIN in text and RESULTS_END in text:
        head, rest = text.split(RESULTS_BEGIN, 1)
        text = head + block + rest.split(RESULTS_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
    DOCS.write_text(text)


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("streams", "detectors", "alerts", "hub", "psycopg"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    command = "YOLO_OFFLINE=1 .venv/bin/python -m benchmarks.cameras" + "".join(
        f" {shlex.quote(a)}" for a in raw)
    out = run(args)
    section = render(args, out, command)
    print(section)
    if args.json is not None:
        s: Summary = out["summary"]
        dump = {"info": out["info"], "hub": s.hub_results, "baseline": s.baseline_results}
        args.json.write_text(json.dumps(dump, indent=1, default=_jsonable))
    if not args.no_docs:
        write_docs(section)
        log.info("wrote %s", DOCS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
