"""Markdown tables and the results section of docs/performance.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.search import P95_LIMIT_S

RESULTS_BEGIN = "<!-- bench:results:begin -->"
RESULTS_END = "<!-- bench:results:end -->"

TARGET_RATIO = 4.0
TARGET_CAMERAS = 12


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f}"


def _lat(r: dict[str, Any], key: str) -> str:
    lat = (r.get("latency") or {}).get(key) or {}
    if not lat.get("count"):
        return "–"
    return f"{_ms(lat.get('p50'))} / {_ms(lat.get('p95'))} (n={lat['count']})"


def _sep(head: str) -> str:
    return "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"


def _verdict(r: dict[str, Any]) -> str:
    v = r.get("verdict")
    if v is None:
        return "?"
    return "yes" if v.ok else "**no**: " + "; ".join(v.reasons)


def hub_table(results: dict[int, dict[str, Any]]) -> str:
    head = ("| cameras | keeps up | analysed fps/cam (min / mean) | idle (key frames only) | "
            "hub CPU (cores) | decode CPU/cam every frame / key frames | "
            "inferred frames/s | saved by gating | saved by batching (mean batch) | infer ms/call | "
            "capture→result p50 / p95 ms | capture→incident p50 / p95 ms | dropped (+ planned idle skips) | "
            "RTSP server CPU | load 1m |")
    rows = [head, _sep(head)]
    for n in sorted(results):
        r = results[n]
        if "error" in r:
            rows.append(f"| {n} | **no**: trial crashed | " + " | ".join(["–"] * 13) + " |")
            continue
        w = r["window_s"]
        dec = r["decode_only"]
        idle_cost = dec.get("idle_cores_per_camera")
        idle_cost_s = "–" if idle_cost is None else f"{idle_cost:.3f}"
        analysed = max(1, r["frames_analysed"])
        inc_key = "incident" if r.get("alerts_path") else "rule_hit"
        rows.append(
            f"| {n} | {_verdict(r)} | {r['analysed_fps_min']:.2f} / {r['analysed_fps_mean']:.2f} | "
            f"{r.get('idle_share', 0):.0%} | {r['cpu_cores']:.2f} | "
            f"{dec['cores_per_camera']:.3f} / {idle_cost_s} | "
            f"{r['frames_inferred'] / w:.1f} | {r['calls_saved_gating'] / analysed:.0%} | "
            f"{r['calls_saved_batching'] / analysed:.0%} ({r['mean_batch']:.1f}) | "
            f"{r['infer_ms_per_call'] or 0:.0f} | {_lat(r, 'result')} | "
            f"{_lat(r, inc_key)}{'' if r.get('alerts_path') else ' (rule hit)'} | "
            f"{r['dropped']} (+ {r.get('idle_skipped', 0)}) | {r.get('server_cores', 0):.2f} | "
            f"{r.get('load_avg_1m', 0):.1f} |")
    return "\n".join(rows)


def baseline_table(results: dict[int, dict[str, Any]]) -> str:
    head = ("| cameras | keeps up | results fps/stream (min / mean) | process CPU (cores) | "
            "inferred frames/s | capture→result p50 / p95 ms | slowest decoder fps | RTSP server CPU | "
            "load 1m |")
    rows = [head, _sep(head)]
    for n in sorted(results):
        r = results[n]
        if "error" in r:
            rows.append(f"| {n} | **no**: trial crashed | " + " | ".join(["–"] * 7) + " |")
            continue
        rows.append(
            f"| {n} | {_verdict(r)} | {r['analysed_fps_min']:.2f} / {r['analysed_fps_mean']:.2f} | "
            f"{r['cpu_cores']:.2f} | {r['frames_inferred'] / r['window_s']:.1f} | {_lat(r, 'result')} | "
            f"{r['decoded_fps_min']:.1f} | {r.get('server_cores', 0):.2f} | {r.get('load_avg_1m', 0):.1f} |")
    return "\n".join(rows)


@dataclass
class Summary:
    hub_best: int
    baseline_best: int
    baseline_throughput_best: int
    hub_results: dict[int, dict[str, Any]]
    baseline_results: dict[int, dict[str, Any]]

    @property
    def ratio(self) -> float | None:
        return self.hub_best / self.baseline_best if self.baseline_best else None

    def verdict_lines(self) -> list[str]:
        ratio = "∞ (the baseline kept up with no camera count tried)" if self.ratio is None \
            else f"{self.ratio:.1f}×"
        best = self.hub_results.get(self.hub_best, {})
        p95 = ((best.get("latency") or {}).get("result") or {}).get("p95")
        lines = [
            f"- **hub** sustains **{self.hub_best}** cameras at 5 fps; **baseline** (ultralytics "
            f"`predict(source=.streams, stream=True, vid_stride=5)`) sustains **{self.baseline_best}** "
            f"({self.baseline_throughput_best} counting throughput only, ignoring latency).",
            f"- ratio hub / baseline (cameras sustained): **{ratio}**.",
        ]
        ok_ratio = (self.ratio is None and self.hub_best > 0) or (self.ratio or 0) >= TARGET_RATIO
        ok_cams = self.hub_best >= TARGET_CAMERAS
        lines.append(
            f"- target ≥ {TARGET_RATIO:.0f}× baseline: {'met' if ok_ratio else '**not met**'}; "
            f"target ≥ {TARGET_CAMERAS} cameras per 2 cores with p95 < {P95_LIMIT_S:.0f} s: "
            f"{'met' if ok_cams else f'**not met** (gap: {TARGET_CAMERAS - self.hub_best} cameras)'}"
            + (f"; p95 capture→result at {self.hub_best} cameras: {_ms(p95)} ms" if p95 is not None else ""))
        return lines


def where_time_goes(results: dict[int, dict[str, Any]], best: int) -> list[str]:
    """CPU split of the largest passing trial and of the first failing one."""
    lines: list[str] = []
    failing = [n for n in sorted(results) if n > best and "error" not in results[n]]
    show = ([best] if best in results else []) + failing[:1]
    ok_runs = [n for n in results if "threads" in results[n]]
    if ok_runs and max(ok_runs) not in show:
        show.append(max(ok_runs))
    for n in show:
        r = results[n]
        if "threads" not in r:
            continue
        w = r["window_s"]
        dec = r["decode_only"]
        lag = ((r.get("latency") or {}).get("loop_lag") or {}).get("p95")
        lines.append(
            f"- **{n} cameras** ({'keeps up' if r['verdict'].ok else 'does not keep up'}): "
            f"process {r['cpu_cores']:.2f} cores of 2; decode alone {dec['cores_total']:.2f} cores "
            f"({dec['cores_per_camera']:.3f}/camera decoding every frame, "
            f"{dec.get('idle_cores_per_camera') or 0:.3f} key frames only, measured with the analyzer off); "
            f"cameras idle {r.get('idle_share', 0):.0%} of the time; "
            f"inference {r['frames_inferred'] / w:.1f} frames/s in {r['infer_calls'] / w:.1f} calls/s, "
            f"{r['infer_ms_per_call'] or 0:.0f} ms/call, busy {r['infer_busy']:.0%} of wall time; "
            f"event-loop lag p95 {_ms(lag)} ms.")
        per_cam = r["cpu_cores"] / max(1, r["cameras"])
        lines.append(f"  - CPU per camera at this load: {per_cam:.3f} cores → 2 cores would fit about "
                     f"{2 / per_cam:.0f} such cameras if CPU were the only limit (an extrapolation).")
        split = ", ".join(f"{name}: {cores:.2f}" for name, cores in r["threads"].items() if cores >= 0.005)
        lines.append(f"  - cores by thread: {split}")
    return lines
