"""Part 2 of the adapters benchmark: door/lock messages end to end through a real Mosquitto.

A publisher in its own process (:mod:`benchmarks.mqtt_publisher`, paho) publishes ``n`` Zigbee2MQTT
door/lock payloads for ~200 devices — each one makes exactly one hub event — at QoS 0 or 1, either as
fast as it can (*burst*: at most ``window`` messages ahead of what the subscriber has received, so the
broker's per-client queue — Mosquitto's ``max_queued_messages`` 1000 — never overflows and every loss is
the subscriber's) or *paced* at a fixed rate (latency without queueing). The subscriber under test runs in
this process:

- hub: the ``mqtt`` source (:class:`adapters.mqtt.MqttSource`, dialect zigbee2mqtt, one device entry per
  device, the hub's metrics), timed at each :class:`SourceEvent` out of ``events()``;
- baseline: a raw ``aiomqtt.Client`` subscribed to ``<prefix>/+`` that ``json.loads`` each payload.

Publish→receive latency pairs the k-th event (or message) of a device with the k-th message published to
it (publish times come back through a memory-mapped file, both sides read ``CLOCK_MONOTONIC``). Losses
are messages never received; duplicates are receptions beyond what was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from adapters.base import AdapterContext
from adapters.mqtt import MqttSource, MqttSourceConfig
from benchmarks.measure import percentile, pid_cpu_s, process_cpu_s
from benchmarks.mqtt_publisher import device_ids, door_lock_messages
from hub.metrics import Metrics

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO_PID = Path("/run/mosquitto/mosquitto.pid")
Received = Callable[[str, float], None]
Extra = Callable[[], dict[str, Any]]


@contextlib.asynccontextmanager
async def hub_subscriber(host: str, port: int, prefix: str, devices: int,
                         received: Received) -> AsyncIterator[Extra]:
    """The ``mqtt`` source, as a hub runs it; ``received(device, t)`` for every event."""
    config = MqttSourceConfig.model_validate({
        "kind": "mqtt", "id": "bench-mqtt", "url": f"mqtt://{host}:{port}", "grid": "440105001001",
        "client_id": f"bench-hub-{uuid.uuid4().hex[:8]}", "clean_session": True, "dialect": "zigbee2mqtt",
        "devices": [{"id": d, "kind": "smart_lock" if d.startswith("lock") else "door_contact",
                     "topic": f"{prefix}/{d}"} for d in device_ids(devices)],
    })
    source = MqttSource(config, AdapterContext(metrics=Metrics(), options={"held_open_s": 3600}))
    async with source:
        if not await source.wait_ready(20):
            hub = source.hub
            state = {"subscribed": hub is not None and hub.ready.is_set(), **source.diagnostics()}
            state.pop("config", None)
            raise RuntimeError(f"mqtt source not connected and subscribed to {host}:{port} in 20 s: {state}")

        async def consume() -> None:
            clock = time.monotonic
            async for event in source.events():
                received(event.source_id, clock())

        task = asyncio.create_task(consume(), name="bench-hub-consume")
        try:
            yield lambda: {"dropped": source.dropped, "counts": dict(source.hub.counts) if source.hub else {}}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def raw_subscriber(host: str, port: int, prefix: str, devices: int,
                         received: Received) -> AsyncIterator[Extra]:
    """The baseline: a bare aiomqtt subscriber that parses each payload."""
    async with aiomqtt.Client(host, port, identifier=f"bench-raw-{uuid.uuid4().hex[:8]}",
                              clean_session=True) as client:
        await client.subscribe(f"{prefix}/+", qos=1)

        async def consume() -> None:
            clock, loads = time.monotonic, json.loads
            async for message in client.messages:
                payload = message.payload
                loads(payload if isinstance(payload, bytes | str) else b"null")
                received(message.topic.value.rpartition("/")[2], clock())

        task = asyncio.create_task(consume(), name="bench-raw-consume")
        try:
            yield dict
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def broker_pid() -> int | None:
    try:
        return int(MOSQUITTO_PID.read_text().strip())
    except (OSError, ValueError):
        return None


async def _publisher(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.mqtt_publisher", json.dumps(spec), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"the MQTT publisher did not finish within {timeout_s:.0f} s") from None
    for line in out.decode().splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT "):])
            return result
    raise RuntimeError(f"the MQTT publisher failed ({proc.returncode}): {err.decode()[-1500:]}")


async def _settle(count: Callable[[], int], n: int, quiet_s: float) -> None:
    """Until ``n`` arrived, or nothing more arrived for ``quiet_s``."""
    last, since = count(), time.monotonic()
    while count() < n:
        await asyncio.sleep(0.02)
        now_count = count()
        if now_count != last:
            last, since = now_count, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return


async def trial(side: str, *, qos: int, n: int, rate: float, host: str = "127.0.0.1", port: int = 1883,
                devices: int = 200, window: int = 200, quiet_s: float = 2.0) -> dict[str, Any]:
    """One run: ``side`` is ``hub`` or ``baseline``; ``rate`` 0 is a burst."""
    prefix = f"bench/{uuid.uuid4().hex[:10]}/z2m"
    order: dict[str, list[int]] = defaultdict(list)
    for i, (dev, _, _) in enumerate(door_lock_messages(prefix, devices, n)):
        order[dev].append(i)
    got: list[tuple[str, float]] = []
    with tempfile.NamedTemporaryFile(prefix="bench-mqtt-", suffix=".clock") as f:
        f.truncate(8 * (n + 1))
        clock = np.memmap(f.name, dtype=np.float64, mode="r+", shape=(n + 1,))

        def received(device: str, t: float) -> None:
            got.append((device, t))
            clock[0] = len(got)

        subscriber = hub_subscriber if side == "hub" else raw_subscriber
        spec = {"host": host, "port": port, "prefix": prefix, "devices": devices, "n": n, "qos": qos,
                "rate": rate, "window": window, "clock": f.name}
        async with subscriber(host, port, prefix, devices, received) as extra:
            bpid = broker_pid()
            cpu0, broker0 = process_cpu_s(), pid_cpu_s(bpid) if bpid else None
            pub = await _publisher(spec, timeout_s=60 + (n / rate if rate else n / 500))
            await _settle(lambda: len(got), n, quiet_s)
            cpu1, broker1 = process_cpu_s(), pid_cpu_s(bpid) if bpid else None
            stats = extra()
        sent = np.array(clock[1:])
    broker_s = None if broker0 is None or broker1 is None else broker1 - broker0
    return {"side": side, "qos": qos, "n": n, "rate": rate, "publisher": pub, **stats,
            **_summary(got, order, sent, cpu1 - cpu0, broker_s)}


def _summary(got: list[tuple[str, float]], order: dict[str, list[int]], sent: np.ndarray[Any, Any],
             cpu_s: float, broker_cpu_s: float | None) -> dict[str, Any]:
    n = len(sent)
    seen: dict[str, int] = defaultdict(int)
    latencies: list[float] = []
    duplicates = 0
    for device, t in got:  # (after a QoS 0 loss a device's later pairs are off by one; losses are shown)
        k = seen[device]
        seen[device] += 1
        if k >= len(order.get(device, ())):
            duplicates += 1
            continue
        latencies.append(t - float(sent[order[device][k]]))
    matched = len(latencies)
    first_pub = float(sent[0]) if n else 0.0
    span = (got[-1][1] - first_pub) if got else 0.0
    return {
        "received": len(got), "lost": n - matched,
        "duplicates": duplicates, "per_s": len(got) / span if span > 0 else 0.0,
        "p50_ms": _ms(percentile(latencies, 50)), "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(max(latencies) if latencies else None),
        "cpu_us_per_msg": cpu_s / max(1, len(got)) * 1e6,
        "broker_us_per_msg": None if broker_cpu_s is None else broker_cpu_s / max(1, n) * 1e6,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def run(*, burst: int, paced: int, rate: float, rounds: int = 2, devices: int = 200,
              host: str = "127.0.0.1", port: int = 1883, window: int = 200) -> list[dict[str, Any]]:
    """For QoS 0 and 1: ``rounds`` bursts (best throughput kept, losses summed over all) and one paced
    run, each for the baseline and the hub, interleaved so both see the same machine."""
    out = []
    for qos in (0, 1):
        for n, r, repeat in ((burst, 0.0, rounds), (paced, rate, 1)):
            runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "hub": []}
            for _ in range(repeat):
                for side in ("baseline", "hub"):
                    result = await trial(side, qos=qos, n=n, rate=r, host=host, port=port, devices=devices,
                                         window=window, quiet_s=1.0 if n <= 2000 else 2.0)
                    log.info("mqtt %s qos %d %s: %.0f/s, lost %d, p50 %.2f ms, p99 %.2f ms", side, qos,
                             "burst" if r == 0 else f"{r:.0f}/s", result["per_s"], result["lost"],
                             result["p50_ms"] or 0, result["p99_ms"] or 0)
                    runs[side].append(result)
            for results in runs.values():
                best = dict(max(results, key=lambda x: x["per_s"]))
                best.update(window=window, rounds=len(results), lost=sum(x["lost"] for x in results),
                            duplicates=sum(x["duplicates"] for x in results),
                            per_s_all=[round(x["per_s"]) for x in results])
                out.append(best)
    return out


def _pair(results: list[dict[str, Any]], qos: int, paced: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    def pick(side: str) -> dict[str, Any]:
        return next(r for r in results if r["side"] == side and r["qos"] == qos and (r["rate"] > 0) == paced)

    return pick("hub"), pick("baseline")


def _lat(r: dict[str, Any]) -> str:
    if r["p50_ms"] is None:
        return "–"
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms"


def table(results: list[dict[str, Any]]) -> str:
    head = "| case | hub: `MqttSource.events()` | baseline: raw aiomqtt + `json.loads` | ratio/overhead |"
    out = [head, "|---|---|---|---|"]
    for qos in (0, 1):
        h, b = _pair(results, qos, paced=False)
        rounds = f" × {h['rounds']} rounds, best" if h["rounds"] > 1 else ""
        ratio = f"{h['per_s'] / b['per_s']:.2f}×" if b["per_s"] else "–"
        out.append(f"| QoS {qos} burst, {h['n']:,} msgs{rounds}: throughput (lost, duplicated in all) | "
                   f"{h['per_s']:,.0f} events/s ({h['lost']}, {h['duplicates']}) | "
                   f"{b['per_s']:,.0f} msg/s ({b['lost']}, {b['duplicates']}) | {ratio} |")
        out.append(f"| QoS {qos} burst: subscriber CPU per message | {h['cpu_us_per_msg']:.0f} µs | "
                   f"{b['cpu_us_per_msg']:.0f} µs | {h['cpu_us_per_msg'] - b['cpu_us_per_msg']:+.0f} µs |")
        out.append(f"| QoS {qos} burst: publish→receive p50 / p99 (≤ {h['window']} in flight) | {_lat(h)} | "
                   f"{_lat(b)} | {_delta(h, b)} |")
        h, b = _pair(results, qos, paced=True)
        out.append(f"| QoS {qos} paced {h['rate']:.0f} msg/s, {h['n']:,} msgs: publish→receive p50 / p99 "
                   f"(lost) | {_lat(h)} ({h['lost']}) | {_lat(b)} ({b['lost']}) | {_delta(h, b)} |")
    return "\n".join(out)


def _delta(h: dict[str, Any], b: dict[str, Any]) -> str:
    if h["p50_ms"] is None or b["p50_ms"] is None:
        return "–"
    return f"{h['p50_ms'] - b['p50_ms']:+.2f} / {h['p99_ms'] - b['p99_ms']:+.2f} ms"
