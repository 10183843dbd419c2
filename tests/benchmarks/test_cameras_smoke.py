"""Smoke test of the camera-scaling benchmark: one real RTSP camera through both sides, briefly.

Runs the same child processes ``python -m benchmarks.cameras`` runs (hub pipeline with the
alerts path into a fresh PostgreSQL schema; ultralytics' multi-stream predict) and checks the
numbers they report are sane, and that the report renders them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.report import baseline_table, hub_table
from benchmarks.search import Verdict, baseline_verdict, hub_verdict
from benchmarks.trial import ROOT, run_child
from detectors.models import ensure_fall_onnx, fall_model_pt
from tests.support import pg
from tests.support.media import make_test_clip
from tests.support.rtsp import RtspServer

pg_url = pg.pg_url


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RtspServer, str]]:
    """A 720p25 H.264 camera (a square sweeping across a gradient) on a real RTSP server."""
    clip = make_test_clip(tmp_path_factory.mktemp("bench") / "cam720.mp4", 4.0, 1280, 720, 25)
    with RtspServer({"cam01": clip}) as server:
        yield server, server.url("cam01")


def _check_latency(result: dict[str, Any]) -> None:
    lat = result["latency"]["result"]
    assert lat["count"] > 0
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"] < 10.0


@pytest.mark.slow
def test_hub_trial_reports_sane_numbers(camera: tuple[RtspServer, str], pg_url: str) -> None:
    server, url = camera
    model = ensure_fall_onnx(ROOT / ".hub-state-bench" / "models", 320)
    spec = {"urls": [url], "model": str(model), "decode_s": 1.5, "warmup_s": 2.0, "duration_s": 6.0,
            "database_url": pg_url}
    r = run_child("benchmarks.hub_trial", spec, server_pid=server.pid, timeout_s=90)
    assert r["cameras"] == 1
    assert r["online_at_start"] == 1
    assert r["alerts_path"] is True
    assert r["analysed_fps_min"] > 0
    assert r["decoded_fps_min"] > 15  # a 25 fps stream, decoded live
    # Every analysed frame is gated or inferred. A frame is counted as analysed when it arrives and
    # as inferred when its inference returns, so at each edge of the measuring window up to the two
    # frames a camera may have in flight (one in inference, one waiting) fall on different sides.
    in_flight = 2 * r["cameras"]
    assert abs(r["frames_analysed"] - (r["frames_gated"] + r["frames_inferred"])) <= in_flight
    assert r["frames_analysed"] > 10
    assert r["infer_calls"] > 0
    assert r["infer_ms_per_call"] > 0
    assert 0 < r["decode_only"]["cores_per_camera"] < 2
    assert 0 < r["cpu_cores"] <= 2.5
    assert r["server_cores"] is not None
    assert r["server_cores"] >= 0
    _check_latency(r)
    assert isinstance(hub_verdict(r), Verdict)
    r["verdict"] = hub_verdict(r)
    table = hub_table({1: r})
    assert table.splitlines()[2].startswith("| 1 | ")


@pytest.mark.slow
def test_baseline_trial_reports_sane_numbers(camera: tuple[RtspServer, str]) -> None:
    server, url = camera
    spec = {"urls": [url], "model": str(fall_model_pt()), "warmup_s": 3.0, "duration_s": 5.0}
    r = run_child("benchmarks.baseline_trial", spec, server_pid=server.pid, timeout_s=90)
    assert r["cameras"] == 1
    assert r["streams_seen"] == 1
    assert r["analysed_fps_min"] > 0
    assert r["decoded_fps_min"] > 15
    assert r["frames_inferred"] > 0
    assert 0 < r["cpu_cores"] <= 2.5
    _check_latency(r)
    r["verdict"] = baseline_verdict(r)
    assert baseline_table({1: r}).splitlines()[2].startswith("| 1 | ")
