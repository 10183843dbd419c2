"""Command line: ``hub run``, ``hub config check``, ``hub demo prepare``, ``hub db ...``
(:mod:`hub.cli_db`); integrator commands
(``hub adapters list``, ``hub probe``, ``hub discover``) live in :mod:`hub.cli_adapters`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hub import __version__
from hub.config import CameraConfig, HubConfig
from hub.config_loader import load_config
from hub.errors import ConfigError, HubError

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hub",
        description="sanwang-hub: fuse cameras (ONVIF/RTSP), door sensors and smart locks (MQTT) into "
        "incidents routed to grid workers. Environment overrides: HUB_STATE_DIR, HUB_HTTP_PORT, "
        "HUB_DATABASE_URL, HUB_MQTT_URL.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the hub until Ctrl-C")
    run.add_argument("-c", "--config", required=True, type=Path, help="YAML config file")
    run.add_argument("--log-level", default=None, help="override hub.log_level (DEBUG, INFO, ...)")

    demo = sub.add_parser("demo", help="demo tools")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True, metavar="SUBCOMMAND")
    prep = demo_sub.add_parser("prepare", help="generate the demo footage a config's demo:// cameras use")
    prep.add_argument("-c", "--config", required=True, type=Path, help="YAML config file")

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = cfg_sub.add_parser("check", help="validate a config file; errors name file, line and field")
    check.add_argument("file", type=Path)

    grids = sub.add_parser("grids", help="the grid hierarchy (区 > 街道 > 社区 > 网格 > 微网格)")
    grids_sub = grids.add_subparsers(dest="grids_command", required=True, metavar="SUBCOMMAND")
    g_check = grids_sub.add_parser(
        "check", help="validate the grid tree (orphans, levels, overlaps) and show where every camera, "
        "zone and device belongs; exit 1 on problems")
    g_check.add_argument("-c", "--config", required=True, type=Path, help="YAML config file")

    from hub import cli_adapters, cli_db

    cli_db.add_commands(sub)
    cli_adapters.add_commands(sub)
    return p


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("amqtt", "transitions", "ultralytics", "aiohttp.access", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _BadConfig(Exception):
    """Config errors were printed; exit with status 2."""


def _load(path: Path) -> HubConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise _BadConfig from None


def _config_check(path: Path) -> int:
    cfg = _load(path)
    zones = sum(len(c.zones) for c in cfg.cameras)
    print(
        f"{path}: ok — {len(cfg.cameras)} cameras ({zones} zones), {len(cfg.devices)} devices, "
        f"{len(cfg.sources)} sources, "
        f"backend {cfg.detect.backend.type}, database "
        f"{'embedded' if not cfg.database.url else 'external'}, mqtt "
        f"{'embedded' if not cfg.mqtt.url else 'external'}"
    )
    return 0


def _grids_check(path: Path) -> int:
    from alerts.grids import GridTree

    cfg = _load(path)
    tree = GridTree(cfg.grids)
    problems = tree.problems()
    print(tree.render() or "(no grids configured)")
    print()
    for a in tree.assignments(cfg):
        where = f"{a.grid} ({a.how})" if a.grid else "UNASSIGNED"
        print(f"  {a.what:<7} {a.id:<28} -> {where}")
        if cfg.grids and a.grid is None:
            problems.append(f"{a.what} {a.id} belongs to no grid: give it grid: or a location inside one")
    print()
    for problem in problems:
        print(f"problem: {problem}")
    print(f"{path}: {len(cfg.grids)} grids, {len(problems)} problem(s)")
    return 1 if problems else 0


def _run(path: Path, log_level: str | None) -> int:
    cfg = _load(path)
    _setup_logging(log_level or cfg.hub.log_level)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from hub.app import Hub  # heavy imports (cv2, av) only when running

    try:
        asyncio.run(Hub(cfg).run_until_signal())
    except HubError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _demo_prepare(path: Path) -> int:
    cfg = _load(path)
    _setup_logging(cfg.hub.log_level)
    from hub.app import resolve_cameras

    try:
        state_dir = cfg.hub.state_dir.resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        cams = resolve_cameras(cfg.cameras, state_dir)
    except HubError as exc:
        log.error("%s", exc)
        return 1
    demo = sum(1 for c in cfg.cameras if isinstance(c, CameraConfig) and c.url.startswith("demo://"))
    print(f"demo footage ready for {demo} of {len(cams)} cameras in {state_dir / 'media'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo_prepare(args.config)
        if args.command == "config":
            return _config_check(args.file)
        if args.command == "run":
            return _run(args.config, args.log_level)
        if args.command == "grids":
            return _grids_check(args.config)
        if args.command == "db":
            from hub import cli_db

            cfg = _load(args.config)
            _setup_logging("WARNING")
            try:
                return cli_db.run(args, cfg)
            except HubError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        if args.command in ("adapters", "probe", "discover"):
            from hub.cli_adapters import run

            _setup_logging("WARNING")
            return run(args)
    except _BadConfig:
        return 2
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
