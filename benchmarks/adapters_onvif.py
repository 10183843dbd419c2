"""Part 3 of the adapters benchmark: the ONVIF adapter against the emulated camera (real SOAP over HTTP).

- *probe, cold*: the first :meth:`OnvifCamera.probe` in a fresh process (``python -m
  benchmarks.adapters_onvif probe '<spec>'``), timed from before importing the adapter module: importing
  it and onvif-zeep-async, loading the WSDL documents, GetSystemDateAndTime, service discovery,
  GetDeviceInformation, GetProfiles, GetSnapshotUri;
- *probe, warm*: the same again in this process (library and WSDLs loaded; a new connection each time);
- *PullPoint latency*: from :meth:`OnvifDevice.emit` of a line-crossing notification (stateless: one
  event each) to the :class:`SourceEvent` out of :meth:`OnvifCamera.events`. Each notification is emitted
  once the next PullMessages is waiting on the device, so the number is the path, not queueing.

Baselines: the same SOAP calls made directly with onvif-zeep-async (``ONVIFCamera``, ``update_xaddrs``,
the service calls; for events ``create_pullpoint_manager`` and a bare ``PullMessages`` loop). The emulator
runs in this process's event loop for both sides.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.measure import percentile
from tests.support.onvif_device import OnvifDevice

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "operator", "bench-S3cret"
LINE = "tns1:RuleEngine/LineDetector/Crossed"
SOURCE = {"VideoSourceConfigurationToken": "vsc0", "Rule": "gate-line"}


def _config(port: int) -> Any:
    from adapters.onvif import OnvifCameraConfig

    return OnvifCameraConfig(kind="onvif", id="bench-cam", host="127.0.0.1", port=port, username=USER,
                             password=PASSWORD)


async def hub_probe(port: int) -> None:
    from adapters.onvif import OnvifCamera

    await OnvifCamera(_config(port)).probe()


async def raw_probe(port: int) -> None:
    """What the hub's probe does, written directly against onvif-zeep-async."""
    import onvif  # type: ignore[import-untyped]

    cam = onvif.ONVIFCamera("127.0.0.1", port, USER, PASSWORD, adjust_time=True, no_cache=True)
    try:
        await cam.update_xaddrs()
        device = await cam.create_devicemgmt_service()
        await device.GetDeviceInformation()
        media = await cam.create_media_service()
        profiles = await media.GetProfiles()
        await media.GetSnapshotUri({"ProfileToken": profiles[0].token})
    finally:
        await cam.close()


PROBES: dict[str, Callable[[int], Awaitable[None]]] = {"hub": hub_probe, "baseline": raw_probe}


async def _timed(call: Awaitable[None]) -> float:
    t0 = time.perf_counter()
    await call
    return (time.perf_counter() - t0) * 1000


async def cold_probe(side: str, port: int, timeout_s: float = 90.0) -> float:
    """ms of the first probe in a fresh Python process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.adapters_onvif", "probe", json.dumps({"side": side, "port": port}),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"cold {side} probe did not finish within {timeout_s:.0f} s") from None
    for line in out.decode().splitlines():
        if line.startswith("RESULT "):
            return float(json.loads(line[len("RESULT "):])["probe_ms"])
    raise RuntimeError(f"cold {side} probe failed ({proc.returncode}): {err.decode()[-1500:]}")


async def _emit_when_pulling(dev: OnvifDevice, n: int, emitted: list[float], timeout_s: float) -> None:
    """Emit ``n`` line crossings, each once the client's next PullMessages is waiting on the device.

    Call it before the client's first PullMessages can have arrived (right after creating the consumer
    task): pull ``i + 1`` of the client is then request number ``base + i + 1``. The emulator counts a
    request and reaches its long-poll wait without yielding, so once the count moved, a pull waits.
    """
    deadline = time.monotonic() + timeout_s
    base = dev.calls["PullMessages"]
    for i in range(n):
        # The emulator counts requests but signals nothing: poll (1 ms), outside the measured path.
        while dev.calls["PullMessages"] < base + i + 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PullMessages #{i + 1} never came")
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.002)
        emitted.append(time.monotonic())
        dev.emit(LINE, SOURCE, {"ObjectId": str(i)})


async def hub_events(dev: OnvifDevice, n: int, timeout_s: float = 60.0) -> list[float]:
    """Latencies (ms) emit → SourceEvent for ``n`` notifications, through :class:`OnvifCamera`."""
    from adapters.onvif import OnvifCamera

    emitted: list[float] = []
    received: list[float] = []
    async with OnvifCamera(_config(dev.port)) as cam:
        async def consume() -> None:
            async for event in cam.events():
                received.append(time.monotonic())
                if event.data["items"].get("ObjectId") != str(len(received) - 1):
                    raise RuntimeError(f"event out of order: {event.data}")
                if len(received) >= n:
                    return

        task = asyncio.create_task(consume(), name="bench-onvif-events")
        try:
            await _emit_when_pulling(dev, n, emitted, timeout_s)
            await asyncio.wait_for(asyncio.shield(task), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return [(r - e) * 1000 for e, r in zip(emitted, received, strict=True)]


async def raw_events(dev: OnvifDevice, n: int, timeout_s: float = 60.0) -> list[float]:
    """The baseline: onvif-zeep-async's PullPoint manager and a bare PullMessages loop."""
    import onvif

    emitted: list[float] = []
    received: list[float] = []
    cam = onvif.ONVIFCamera("127.0.0.1", dev.port, USER, PASSWORD, adjust_time=True, no_cache=True)
    try:
        await cam.update_xaddrs()
        manager = await cam.create_pullpoint_manager(dt.timedelta(seconds=60), lambda: None)
        service = manager.get_service()

        async def consume() -> None:
            while len(received) < n:
                reply = await service.PullMessages({"Timeout": dt.timedelta(seconds=10), "MessageLimit": 100})
                t = time.monotonic()
                received.extend(t for _ in reply.NotificationMessage or ())

        task = asyncio.create_task(consume(), name="bench-onvif-raw-events")
        try:
            await _emit_when_pulling(dev, n, emitted, timeout_s)
            await asyncio.wait_for(asyncio.shield(task), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await manager.shutdown()
    finally:
        await cam.close()
    return [(r - e) * 1000 for e, r in zip(emitted, received, strict=True)]


def _stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values) if values else None}


async def run(*, events: int, probes: int, cold: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    async with OnvifDevice(username=USER, password=PASSWORD) as dev:
        for side in ("baseline", "hub"):
            out[f"cold_{side}"] = await cold_probe(side, dev.port) if cold else None
        log.info("onvif cold probes: %s (%.1f s)", out, time.monotonic() - t0)
        warm: dict[str, list[float]] = {"hub": [], "baseline": []}
        for probe in PROBES.values():
            await probe(dev.port)  # loads the library and WSDLs in this process
        for _ in range(probes):
            for side, probe in PROBES.items():
                warm[side].append(await _timed(probe(dev.port)))
        for side in ("hub", "baseline"):
            out[f"warm_{side}"] = _stats(warm[side])
        log.info("onvif warm probes done (%.1f s)", time.monotonic() - t0)
        out["events_baseline"] = _stats(await raw_events(dev, events))
        out["events_hub"] = _stats(await hub_events(dev, events))
        log.info("onvif events done (%.1f s)", time.monotonic() - t0)
        out["auth_failures"] = len(dev.auth_failures)
    return out


def table(r: dict[str, Any]) -> str:
    out = ["| case | hub: `OnvifCamera` | baseline: onvif-zeep-async directly | ratio/overhead |",
           "|---|---|---|---|"]
    ch, cb = r["cold_hub"], r["cold_baseline"]
    if ch is not None and cb is not None:
        out.append(f"| probe, cold (fresh process: library import, WSDLs, 5 SOAP calls) | {ch:,.0f} ms | "
                   f"{cb:,.0f} ms | {ch - cb:+,.0f} ms ({ch / cb:.2f}×) |")
    wh, wb = r["warm_hub"], r["warm_baseline"]
    out.append(f"| probe, warm (p50 / p90 of {wh['n']}; new connection each) | "
               f"{wh['p50']:.1f} / {wh['p90']:.1f} ms | {wb['p50']:.1f} / {wb['p90']:.1f} ms | "
               f"{wh['p50'] - wb['p50']:+.1f} ms ({wh['p50'] / wb['p50']:.2f}×) |")
    eh, eb = r["events_hub"], r["events_baseline"]
    out.append(f"| PullPoint emit → event, p50 / p99 of {eh['n']} | {eh['p50']:.2f} / {eh['p99']:.2f} ms | "
               f"{eb['p50']:.2f} / {eb['p99']:.2f} ms | {eh['p50'] - eb['p50']:+.2f} / "
               f"{eh['p99'] - eb['p99']:+.2f} ms |")
    return "\n".join(out)


async def _child_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Timed from before any import of the adapter or the library (both sides import what they need)."""
    return {"probe_ms": await _timed(PROBES[spec["side"]](int(spec["port"])))}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "probe":
        print("usage: python -m benchmarks.adapters_onvif probe '{\"side\": \"hub\", \"port\": 8080}'")
        return 2
    result = asyncio.run(_child_probe(json.loads(argv[1])))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
