"""Integrator commands: ``hub adapters list``, ``hub probe``, ``hub discover``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from adapters.base import Adapter, AdapterConfig, Capability
from hub.errors import (
    AdapterAuthError,
    AdapterConnectError,
    AdapterError,
    AdapterNotReady,
    ConfigError,
    HubError,
)

EXIT_OK, EXIT_BAD_INPUT, EXIT_AUTH, EXIT_UNREACHABLE = 0, 2, 3, 4


def add_commands(sub: Any) -> None:
    """Register the integrator subcommands on the main parser's subparsers."""
    adapters = sub.add_parser("adapters", help="adapter kinds available to this hub")
    a_sub = adapters.add_subparsers(dest="adapters_command", required=True, metavar="SUBCOMMAND")
    lst = a_sub.add_parser("list", help="list adapter kinds (in-tree and installed entry points)")
    lst.add_argument("--json", action="store_true", help="machine-readable output")

    probe = sub.add_parser(
        "probe",
        help="check one camera/source entry against the real device and print what it reports",
        description="SNIPPET is one cameras:/sources: entry as YAML or JSON text, a file holding one, "
        "or '-' for stdin. Or take an entry from a whole config with -c FILE --id ID. "
        "Exit status: 0 ok, 2 bad config, 3 credentials refused, 4 unreachable/not ready.",
    )
    probe.add_argument("snippet", nargs="?", help="YAML/JSON entry, a file, or - (stdin)")
    probe.add_argument("-c", "--config", type=Path, help="a hub config file to take the entry from")
    probe.add_argument("--id", help="with -c: the camera or source id")
    probe.add_argument("--events", type=float, default=0.0, metavar="SECONDS",
                       help="also print the device's events for this long")
    probe.add_argument("--timeout", type=float, default=20.0, help="seconds before giving up (default 20)")
    probe.add_argument("--json", action="store_true", help="machine-readable output")

    discover = sub.add_parser("discover",
                              help="find ONVIF cameras with WS-Discovery and print config snippets")
    try:
        from adapters.discovery import add_arguments
    except ImportError as exc:  # pragma: no cover - shown when the module is broken
        discover.set_defaults(discovery_error=str(exc))
    else:
        add_arguments(discover)


def run(args: argparse.Namespace) -> int:
    if args.command == "adapters":
        return _list(args.json)
    if args.command == "probe":
        return _probe(args)
    if args.command == "discover":
        if getattr(args, "discovery_error", None):
            print(f"error: discovery is unavailable: {args.discovery_error}", file=sys.stderr)
            return 1
        from adapters.discovery import run_cli

        return int(run_cli(args))
    return EXIT_BAD_INPUT


def _list(as_json: bool) -> int:
    from adapters.registry import entries, load_failures

    rows = [e.to_json() for e in entries()]
    failures = load_failures()
    if as_json:
        print(json.dumps({"adapters": rows, "failed": failures}, ensure_ascii=False, indent=2))
        return 0
    width = max((len(r["kind"]) for r in rows), default=4)
    print(f"{'KIND':<{width}}  {'CAPABILITIES':<32}  ORIGIN / DESCRIPTION")
    for r in rows:
        caps = ",".join(r["capabilities"])
        print(f"{r['kind']:<{width}}  {caps:<32}  {r['origin']}: {r['description']}")
    for name, error in failures.items():
        print(f"! {name} failed to import: {error}", file=sys.stderr)
    return 0


def _entry(args: argparse.Namespace) -> AdapterConfig:
    from hub.config_loader import load_config, parse_adapter_config

    if args.config is not None:
        if not args.id:
            raise ConfigError("with -c, say which entry to probe", hint="--id <camera or source id>")
        cfg = load_config(args.config)
        for entry in [*cfg.cameras, *cfg.sources]:
            if entry.id == args.id:
                return entry
        known = [e.id for e in [*cfg.cameras, *cfg.sources]]
        raise ConfigError(f"no camera or source {args.id!r}", file=str(args.config),
                          hint=f"ids: {', '.join(known) or 'none'}")
    if not args.snippet:
        raise ConfigError("give an entry to probe", hint="hub probe 'kind: onvif\\nid: cam1\\nhost: ...'")
    if args.snippet == "-":
        return parse_adapter_config(sys.stdin.read(), "<stdin>")
    path = Path(args.snippet)
    with contextlib.suppress(OSError):
        if "\n" not in args.snippet and path.is_file():
            return parse_adapter_config(path.read_text(encoding="utf-8"), str(path))
    return parse_adapter_config(args.snippet, "<snippet>")


def _probe(args: argparse.Namespace) -> int:
    try:
        cfg = _entry(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from adapters.registry import create

    adapter = create(cfg)
    try:
        report = asyncio.run(asyncio.wait_for(_probe_async(adapter, args), args.timeout + args.events))
    except AdapterAuthError as exc:
        print(f"error: credentials refused: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except (AdapterConnectError, AdapterNotReady, TimeoutError) as exc:
        print(f"error: not reachable or not ready: {exc or 'timed out'}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except AdapterError as exc:
        print(f"error: the device answered, but not as the adapter expects: {exc}", file=sys.stderr)
        return 1
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    elif "events" in report:
        print(f"  {'events':<13} {len(report['events'])} received")
    return EXIT_OK


async def _probe_async(adapter: Adapter[Any], args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    info = await adapter.probe()
    report: dict[str, Any] = {"device": info.to_json(), "probe_ms": round((time.monotonic() - t0) * 1000)}
    caps = type(adapter).capabilities
    async with adapter:
        if Capability.STREAMS in caps:
            report["streams"] = (await adapter.streams()).to_json()
        if not args.json:  # what the device said, before waiting for its events
            _print_report(report)
            sys.stdout.flush()
        if args.events > 0 and Capability.EVENTS in caps:
            events: list[dict[str, Any]] = []
            report["events"] = events
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.events):
                    async for event in adapter.events():
                        events.append(event.to_json())
                        if not args.json:
                            print(f"event: {event.kind} {json.dumps(event.data, ensure_ascii=False)}",
                                  flush=True)
    return report


def _print_report(report: dict[str, Any]) -> None:
    d = report["device"]
    print(f"ok: {d['kind']} {d['id']} answered in {report['probe_ms']} ms")
    for key in ("manufacturer", "model", "firmware", "serial"):
        if d.get(key):
            print(f"  {key:<13} {d[key]}")
    print(f"  {'capabilities':<13} {', '.join(d['capabilities'])}")
    for key, value in (d.get("extra") or {}).items():
        print(f"  {key:<13} {value}")
    streams = report.get("streams")
    if streams:
        for name in ("main", "sub"):
            s = streams.get(name)
            if s:
                size = f" {s['width']}x{s['height']}" if s.get("width") else ""
                print(f"  {name + ' stream':<13} {s['url']}{size}")
        if streams.get("snapshot"):
            print(f"  {'snapshot':<13} {streams['snapshot']}")
