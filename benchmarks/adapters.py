"""Adapters benchmark: MQTT dialect decoding, MQTT end to end on Mosquitto, ONVIF probe and events.

    .venv/bin/python -m benchmarks.adapters            # ~2 min (make bench-adapters)
    .venv/bin/python -m benchmarks.adapters --quick    # ~15 s smoke run (never writes the docs)

Three parts, each against a baseline measured in the same run on the same inputs:

1. decode (:mod:`benchmarks.adapters_decode`): ``DeviceHub.handle()`` per dialect (zigbee2mqtt, json,
   tasmota, homeassistant, mapping) over ~200 devices vs. a bare ``json.loads`` of the same payloads;
2. mqtt (:mod:`benchmarks.adapters_mqtt`): a publisher process → the real Mosquitto (127.0.0.1:1883) →
   ``MqttSource.events()`` vs. a raw aiomqtt subscriber, at QoS 0 and 1: throughput, losses, CPU per
   message, publish→event latency;
3. onvif (:mod:`benchmarks.adapters_onvif`): ``OnvifCamera`` against the emulated camera vs. the same
   calls made directly with onvif-zeep-async: probe cold and warm, PullPoint emit→event latency.

Prints one markdown table per part (case | hub | baseline | ratio/overhead) and, unless ``--no-docs`` or
``--quick``, writes them into the "Adapters" section of docs/performance.md. Method: that section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import adapters_decode, adapters_mqtt, adapters_onvif
from benchmarks.measure import load_average, machine_description

log = logging.getLogger("benchmarks.adapters")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "performance.md"
BEGIN = "<!-- bench:adapters:begin -->"
END = "<!-- bench:adapters:end -->"
PARTS = ("decode", "mqtt", "onvif")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.adapters", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="Smoke run: small counts, one round (~15 s).")
    p.add_argument("--parts", default=",".join(PARTS), help="Parts to run (default decode,mqtt,onvif).")
    p.add_argument("--devices", type=int, default=200, help="MQTT devices (a quarter smart locks).")
    p.add_argument("--messages", type=int, help="decode: messages per dialect (default 20000; quick 2000).")
    p.add_argument("--repeats", type=int, help="decode: timed passes, best kept (default 3; quick 1).")
    p.add_argument("--burst", type=int, help="mqtt: messages per burst (default 20000; quick 1000).")
    p.add_argument("--rounds", type=int, help="mqtt: bursts per side and QoS, best kept (default 2; quick 1)")
    p.add_argument("--paced", type=int, help="mqtt: messages of the paced run (default 1500; quick 100).")
    p.add_argument("--rate", type=float, default=500.0, help="mqtt: paced publish rate, msg/s (default 500).")
    p.add_argument("--window", type=int, default=200,
                   help="mqtt: most messages published ahead of the subscriber in a burst (default 200; "
                        "Mosquitto drops QoS 1 messages beyond its max_queued_messages, 1000).")
    p.add_argument("--mqtt", default="127.0.0.1:1883", help="Mosquitto host:port (default 127.0.0.1:1883).")
    p.add_argument("--events", type=int, help="onvif: PullPoint events per side (default 100; quick 20).")
    p.add_argument("--probes", type=int, help="onvif: warm probes per side (default 20; quick 3).")
    p.add_argument("--no-cold", action="store_true", help="onvif: skip the cold probes (fresh processes).")
    p.add_argument("--no-docs", action="store_true", help="Don't rewrite docs/performance.md.")
    p.add_argument("--json", type=Path, help="Also write the raw results here.")
    args = p.parse_args(argv)
    q = args.quick
    args.messages = args.messages or (2000 if q else 20000)
    args.repeats = args.repeats or (1 if q else 3)
    args.burst = args.burst or (1000 if q else 20000)
    args.rounds = args.rounds or (1 if q else 2)
    args.paced = args.paced or (100 if q else 1500)
    args.events = args.events or (20 if q else 100)
    args.probes = args.probes or (3 if q else 20)
    args.parts = tuple(part.strip() for part in args.parts.split(",") if part.strip())
    if unknown := set(args.parts) - set(PARTS):
        p.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    host, _, port = args.mqtt.rpartition(":")
    args.mqtt_host, args.mqtt_port = host or "127.0.0.1", int(port)
    return args


def require_mosquitto(host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError as exc:
        raise SystemExit(f"Mosquitto is not reachable at {host}:{port} ({exc}); start it with "
                         "`mosquitto -d -c /etc/mosquitto/mosquitto.conf`") from None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every selected part; the raw results (``render`` makes the tables)."""
    started = time.monotonic()
    out: dict[str, Any] = {"machine": machine_description(), "load_at_start": load_average()}
    log.info("machine: %s; load average %s", out["machine"], out["load_at_start"])
    if "decode" in args.parts:
        out["decode"] = adapters_decode.run(args.devices, args.messages, args.repeats)
        log.info("decode done (%.0f s)", time.monotonic() - started)
    if "mqtt" in args.parts:
        require_mosquitto(args.mqtt_host, args.mqtt_port)
        out["mqtt"] = await adapters_mqtt.run(burst=args.burst, paced=args.paced, rate=args.rate,
                                              rounds=args.rounds, devices=args.devices, host=args.mqtt_host,
                                              port=args.mqtt_port, window=args.window)
        log.info("mqtt done (%.0f s)", time.monotonic() - started)
    if "onvif" in args.parts:
        out["onvif"] = await adapters_onvif.run(events=args.events, probes=args.probes, cold=not args.no_cold)
        log.info("onvif done (%.0f s)", time.monotonic() - started)
    out["elapsed_s"] = round(time.monotonic() - started)
    return out


def render(out: dict[str, Any], command: str) -> str:
    lines = [
        f"Run: `{command}` — {time.strftime('%Y-%m-%d %H:%M %Z')}, {out['elapsed_s']} s.",
        "",
        f"Machine: {out['machine']}. Load average (1/5/15 min) at start: "
        f"{', '.join(f'{v:.1f}' for v in out['load_at_start'])}.",
    ]
    if "decode" in out:
        lines += ["", "**1. Decoding per dialect** (one thread, no I/O; best of the timed passes):", "",
                  adapters_decode.table(out["decode"])]
    if "mqtt" in out:
        lines += ["", "**2. MQTT end to end** (publisher process → Mosquitto → this process):", "",
                  adapters_mqtt.table(out["mqtt"])]
    if "onvif" in out:
        lines += ["", "**3. ONVIF** (emulated camera, real SOAP over HTTP on loopback):", "",
                  adapters_onvif.table(out["onvif"])]
    return "\n".join(lines) + "\n"


def write_docs(section: str) -> None:
    text = DOCS.read_text() if DOCS.is_file() else "# Performance\n"
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Adapters\n\n" + block + "\n"
    DOCS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("adapters", "hub", "onvif", "zeep", "aiohttp", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    command = ".venv/bin/python -m benchmarks.adapters" + "".join(f" {shlex.quote(a)}" for a in raw)
    out = asyncio.run(run(args))
    section = render(out, command)
    print(section)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    if not (args.no_docs or args.quick):
        write_docs(section)
        log.info("wrote %s", DOCS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
