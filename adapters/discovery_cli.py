"""``hub discover``: the command line over :func:`adapters.discovery.discover`, and what it prints.

:func:`render_yaml` turns discovered devices into ``cameras:`` entries for the ``onvif`` adapter (one
comment line describing each device, its password read from a ``CAM_<ID>_PASSWORD`` environment
variable); :func:`render_json` is the machine-readable form. Progress goes to stderr, snippets to
stdout. ``add_arguments`` and ``run_cli`` are also importable from :mod:`adapters.discovery`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import yaml

from adapters.discovery import (
    MAX_TARGETS,
    WSD_PORT,
    DiscoveredDevice,
    DiscoveryInputError,
    DiscoveryResult,
    discover,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FOUND", "EXIT_NONE_FOUND", "add_arguments", "camera_ids",
           "config_snippet", "password_env", "render_json", "render_yaml", "run_cli"]

EXIT_FOUND, EXIT_NONE_FOUND, EXIT_BAD_INPUT = 0, 1, 2


# -- output -----------------------------------------------------------------------------------------
def camera_ids(devices: Sequence[DiscoveredDevice]) -> list[str]:
    """A unique, readable id per device: a slug of its name, else of its address."""
    ids: list[str] = []
    for device in devices:
        by_host = "cam-" + re.sub(r"[^0-9a-z]+", "-", device.host.lower()).strip("-")
        base = re.sub(r"[^0-9a-z]+", "-", device.name.lower()).strip("-")[:40].strip("-") or by_host
        candidate, n = base, 2
        if candidate in ids and base != by_host:
            candidate = base = f"{base}-{by_host.removeprefix('cam-')}"
        while candidate in ids:
            candidate, n = f"{base}-{n}", n + 1
        ids.append(candidate)
    return ids


def password_env(camera_id: str) -> str:
    """The environment variable a snippet reads the camera's password from: ``CAM_<ID>_PASSWORD``."""
    core = re.sub(r"[^A-Z0-9]+", "_", camera_id.upper()).strip("_").removeprefix("CAM_")
    return f"CAM_{core}_PASSWORD"


def config_snippet(device: DiscoveredDevice, camera_id: str, username: str = "admin") -> dict[str, Any]:
    """One ``cameras:`` entry for the ``onvif`` adapter."""
    name = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", device.name or device.hardware).split())[:100]
    return {"kind": "onvif", "id": camera_id, "name": name or device.host,
            "host": device.host, "port": device.port, "username": username,
            "password": f"${{{password_env(camera_id)}}}"}


def _comment(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text)[:300]


def render_yaml(devices: Sequence[DiscoveredDevice], username: str = "admin") -> str:
    """YAML list items to paste under ``cameras:``, each preceded by a comment describing the device."""
    lines = [f"# {len(devices)} ONVIF device(s) found by WS-Discovery: paste under `cameras:` and export "
             "each CAM_..._PASSWORD variable."]
    for device, cid in zip(devices, camera_ids(devices), strict=True):
        about = [device.hardware, device.device_url or "no XAddr", device.address]
        if device.location:
            about.append(f"location: {device.location}")
        lines.append(_comment("# " + " | ".join(a for a in about if a)))
        lines.append(yaml.safe_dump([config_snippet(device, cid, username)], sort_keys=False,
                                    allow_unicode=True, width=1000).rstrip("\n"))
    return "\n".join(lines) + "\n"


def render_json(result: DiscoveryResult, username: str = "admin") -> str:
    devices = result.devices
    rows = [{**d.to_json(), "config": config_snippet(d, cid, username)}
            for d, cid in zip(devices, camera_ids(devices), strict=True)]
    return json.dumps({"devices": rows, "stats": {**asdict(result.stats), "ignored": result.stats.ignored}},
                      ensure_ascii=False, indent=2)


# -- command line (``hub discover``) ----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Send a WS-Discovery probe for ONVIF cameras and print a cameras: config snippet for each one "
        "that answers. Exit status: 0 devices found, 1 none found, 2 bad input.")
    parser.add_argument("-i", "--interface", action="append", default=[], metavar="NAME|IP",
                        help="interface (eth0) or its IPv4 address to send the multicast probe from; "
                        "repeat for several (default: the system's multicast route)")
    parser.add_argument("--unicast", action="append", default=[], metavar="HOST|IP[:PORT]|CIDR",
                        help="also probe these hosts or ranges directly, for routed networks where "
                        "multicast does not pass (comma-separated or repeated)")
    parser.add_argument("--no-multicast", action="store_true", help="send unicast probes only")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for answers (default 3)")
    parser.add_argument("--ttl", type=int, default=1, help="multicast TTL (default 1: this subnet only)")
    parser.add_argument("--port", type=int, default=WSD_PORT, help="WS-Discovery UDP port (default 3702)")
    parser.add_argument("--rate", type=float, default=200.0, help="unicast probes per second (default 200)")
    parser.add_argument("--repeat", type=int, default=2, help="send each probe this many times (default 2)")
    parser.add_argument("--max-targets", type=int, default=MAX_TARGETS,
                        help=f"refuse unicast ranges larger than this (default {MAX_TARGETS})")
    parser.add_argument("--username", default="admin", help="user name written into the snippets")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run_cli(args: argparse.Namespace) -> int:
    """``hub discover``: progress on stderr, snippets on stdout. 0 found, 1 none found, 2 bad input."""

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def found(device: DiscoveredDevice) -> None:
        what = device.name or device.hardware or "ONVIF device"
        say(f"found {what} at {device.device_url or device.source}")

    try:
        result = asyncio.run(discover(
            interfaces=args.interface, unicast=args.unicast, multicast=not args.no_multicast,
            timeout_s=args.timeout, ttl=args.ttl, port=args.port, repeat=args.repeat, rate=args.rate,
            max_targets=args.max_targets, on_progress=say, on_device=found))
    except DiscoveryInputError as exc:
        say(f"error: {exc}")
        return EXIT_BAD_INPUT
    except OSError as exc:  # no multicast route, no network at all
        say(f"error: cannot probe: {exc}")
        return EXIT_BAD_INPUT
    s = result.stats
    say(f"{len(result.devices)} device(s) in {s.elapsed_s:.1f} s; {s.probes_sent} probe(s) sent, "
        f"{s.datagrams} answer(s), {s.duplicates} duplicate(s), {s.ignored} ignored, "
        f"{s.send_errors} send error(s)")
    if args.json:
        print(render_json(result, args.username))
    elif result.devices:
        print(render_yaml(result.devices, args.username), end="")
    if not result.devices:
        if s.send_errors:
            say(f"{s.send_errors} probe(s) could not be sent: {s.first_error} (no route to that network? "
                "name the camera network's interface with --interface)")
        say("no ONVIF device answered. Check that --interface names the camera network's interface, use "
            "--unicast HOST|CIDR for cameras behind a router (multicast does not cross routers), and that "
            "no firewall drops UDP port 3702 or the answers coming back to this host.")
        return EXIT_NONE_FOUND
    return EXIT_FOUND
