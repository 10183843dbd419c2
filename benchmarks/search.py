"""What "keeps up" means, and the stepped search for the largest camera count that does."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

SOURCE_FPS = 25.0
FPS_SHARE = 0.9  # every camera analysed at >= 90 % of the detect rate (gated frames count)
DECODE_SHARE = 0.94  # every decoder at >= 94 % of the source rate (else its backlog grows)
DROP_SHARE = 0.03  # sampled frames overwritten before analysis, at most 3 %
P95_LIMIT_S = 1.0
MIN_SAMPLES = 3  # fewer incident/rule-hit samples than this: judged on frame results only


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...] = ()


def _p95(result: dict[str, Any], key: str) -> tuple[float | None, int]:
    lat = result.get("latency", {}).get(key) or {}
    return lat.get("p95"), int(lat.get("count") or 0)


def _common(r: dict[str, Any], target_fps: float) -> list[str]:
    """Rate and latency checks. The hub's idle cameras skip frames on purpose (key frames only):
    those planned skips count as covered (``covered_fps``: analysed + planned), and the decoder's
    pace is the packets it consumed (``consumed_fps``: decoded + skipped on purpose). Sides
    without idle decoding (the baseline) report neither and are judged on the plain rates."""
    why = []
    analysed = r.get("covered_fps_min", r["analysed_fps_min"])
    if analysed < FPS_SHARE * target_fps:
        what = "analysed (+ idle skips)" if "covered_fps_min" in r else "analysed"
        why.append(f"slowest camera {what} {analysed:.2f} fps < {FPS_SHARE * target_fps:.1f}")
    consumed = r.get("consumed_fps_min", r["decoded_fps_min"])
    if consumed < DECODE_SHARE * SOURCE_FPS:
        why.append(f"slowest decoder {consumed:.1f} fps < {DECODE_SHARE * SOURCE_FPS:.1f} "
                   "(falling behind)")
    p95, _ = _p95(r, "result")
    if p95 is None:
        why.append("no frame results measured")
    elif p95 >= P95_LIMIT_S:
        why.append(f"p95 capture→result {p95:.2f} s ≥ {P95_LIMIT_S:.0f} s")
    return why


def hub_verdict(r: dict[str, Any]) -> Verdict:
    why = _common(r, r["target_fps"])
    if r.get("online_at_start", r["cameras"]) < r["cameras"]:
        why.append(f"only {r['online_at_start']} of {r['cameras']} cameras came online")
    if r["reconnects"]:
        why.append(f"{r['reconnects']} reconnects")
    if r["infer_errors"]:
        why.append(f"{r['infer_errors']} failed inference calls")
    sampled = max(1, r["frames_sampled"])
    if r["dropped"] > DROP_SHARE * sampled:
        why.append(f"{r['dropped']} of {sampled} sampled frames dropped (> {DROP_SHARE:.0%})")
    key = "incident" if r.get("alerts_path") else "rule_hit"
    p95, n = _p95(r, key)
    if p95 is not None and n >= MIN_SAMPLES and p95 >= P95_LIMIT_S:
        why.append(f"p95 capture→{key.replace('_', ' ')} {p95:.2f} s ≥ {P95_LIMIT_S:.0f} s")
    return Verdict(not why, tuple(why))


def baseline_verdict(r: dict[str, Any]) -> Verdict:
    why = _common(r, r["target_fps"])
    if r["streams_seen"] < r["cameras"]:
        why.append(f"results from {r['streams_seen']} of {r['cameras']} streams")
    return Verdict(not why, tuple(why))


def baseline_throughput_only(r: dict[str, Any]) -> bool:
    """The lenient reading: enough results per stream, whatever the latency."""
    return bool(r["streams_seen"] >= r["cameras"] and r["analysed_fps_min"] >= FPS_SHARE * r["target_fps"])


@dataclass
class Search:
    """Stepped search: try counts in order until one fails, then bisect the gap."""

    steps: Sequence[int]
    trial: Callable[[int], dict[str, Any]]
    verdict: Callable[[dict[str, Any]], Verdict]
    max_refine: int = 2  # bisection trials after the first failure
    all_steps: bool = False  # keep stepping after a failure (to see how costs scale)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)

    def _run(self, n: int) -> bool:
        try:
            r = self.trial(n)
        except Exception as exc:  # a crashed trial is a failed trial, and the report says why
            log.error("trial with %d cameras failed: %s", n, exc)
            r = {"cameras": n, "error": str(exc)[-2000:]}
            self.results[n] = r
            r["verdict"] = Verdict(False, (f"trial crashed: {str(exc)[-200:]}",))
            return False
        v = self.verdict(r)
        r["verdict"] = v
        self.results[n] = r
        log.info("%3d cameras: %s%s", n, "keeps up" if v.ok else "does NOT keep up",
                    "" if v.ok else " (" + "; ".join(v.reasons) + ")")
        return v.ok

    def run(self) -> int:
        """The largest count that kept up (0 if the first failed)."""
        best, failed = 0, None
        for n in self.steps:
            if self._run(n):
                best = n
            elif self.all_steps:
                failed = n if failed is None else failed
            else:
                failed = n
                break
        if self.all_steps:
            return best
        for _ in range(self.max_refine):
            if failed is None or failed - best <= 1:
                break
            mid = (best + failed) // 2
            if self._run(mid):
                best = mid
            else:
                failed = mid
        return best
