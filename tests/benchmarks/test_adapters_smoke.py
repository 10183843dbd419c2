"""Smoke test of the adapters benchmark: ``python -m benchmarks.adapters --quick``, in-process.

Runs all three parts with small counts against the real peers (the local Mosquitto, the emulated ONVIF
camera over real SOAP) and checks that the numbers are sane and complete and that the report renders
them. No performance thresholds: on a shared 2-core machine those would flake.
"""

from __future__ import annotations

from typing import Any

from benchmarks import adapters as bench
from benchmarks.adapters_decode import DIALECTS, WORKLOADS
from benchmarks.mqtt_publisher import door_lock_messages
from tests.adapters.mqtt_support import require_mosquitto


def _sane_latency(r: dict[str, Any], key50: str, key99: str, limit_ms: float) -> None:
    assert r[key50] is not None and r[key99] is not None, r
    assert 0 < r[key50] <= r[key99] < limit_ms, r


def test_workloads_are_deterministic() -> None:
    """Both sides of a comparison (and both MQTT processes) build the same inputs from a seed."""
    messages = door_lock_messages("p", 20, 50)
    assert messages == door_lock_messages("p", 20, 50)
    assert len({dev for dev, _, _ in messages}) > 10
    for dialect in DIALECTS:
        a, b = WORKLOADS[dialect](20, 50), WORKLOADS[dialect](20, 50)
        assert [t for t, _ in a.messages] == [t for t, _ in b.messages]  # payloads may carry "now"


async def test_quick_run_reports_sane_numbers() -> None:
    require_mosquitto()
    args = bench.parse_args(["--quick", "--no-docs"])
    out = await bench.run(args)

    decode = {r["dialect"]: r for r in out["decode"]}
    assert set(decode) == set(DIALECTS)
    for r in decode.values():
        assert r["messages"] == args.messages
        assert r["devices"] == args.devices  # Home Assistant: every device discovered
        assert r["bad"] == 0, r["counts"]  # the workloads are valid payloads
        assert sum(v for k, v in r["counts"].items() if k != "discovery") == args.messages
        assert 0 < r["events"] < args.messages
        assert r["hub_us"] > 0
        assert r["baseline_us"] > 0

    mqtt = out["mqtt"]
    assert {(r["side"], r["qos"], r["rate"] > 0) for r in mqtt} == {
        (side, qos, paced) for side in ("hub", "baseline") for qos in (0, 1) for paced in (False, True)}
    for r in mqtt:
        assert r["n"] == (args.paced if r["rate"] else args.burst)
        assert r["publisher"]["published"] == r["n"]
        if r["qos"] == 1:
            assert r["lost"] == 0, r  # QoS 1 loses nothing
            assert r["publisher"]["acked"] == r["n"]
        assert r["received"] >= 0.9 * r["n"], r  # QoS 0 may lose, but not on loopback with flow control
        assert r["per_s"] > 0
        assert r["cpu_us_per_msg"] > 0
        _sane_latency(r, "p50_ms", "p99_ms", 10_000)
        if r["side"] == "hub":
            assert r["dropped"] == 0  # the source's event queue never overflowed
            assert r["counts"].get("ok") == r["received"]

    onvif = out["onvif"]
    assert onvif["auth_failures"] == 0  # WS-Security digest accepted on every call
    assert onvif["cold_hub"] > onvif["warm_hub"]["p50"] > 0  # cold includes importing the library
    assert onvif["cold_baseline"] > onvif["warm_baseline"]["p50"] > 0
    for side in ("hub", "baseline"):
        assert onvif[f"warm_{side}"]["n"] == args.probes
        events = onvif[f"events_{side}"]
        assert events["n"] == args.events
        _sane_latency(events, "p50", "p99", 5_000)

    report = bench.render(out, "bench --quick")
    tables = [line for line in report.splitlines() if line.startswith("| case |")]
    assert len(tables) == 3
    assert all(line.endswith("| ratio/overhead |") for line in tables)
    rows = [line for line in report.splitlines() if line.startswith("|")]
    assert len(rows) == 3 * 2 + len(DIALECTS) + 8 + 3  # headers, separators and one row per case
    assert all(line.count("|") == 5 for line in rows)
