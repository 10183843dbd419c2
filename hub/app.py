"""The hub runtime: one asyncio loop, a TaskGroup of named tasks, clean shutdown.

``Hub.run()`` starts (in order) the state dir, the database (embedded PostgreSQL when
no URL is configured), the MQTT broker connection (embedded amqtt when no URL), the
detector, the stream readers, the analyzer, the alert engine, MQTT device adapters,
the web app — then runs everything as named tasks until cancelled. Teardown happens in
reverse through an ``AsyncExitStack``: web server closed, readers stopped, pending
database writes flushed, embedded servers stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from hub.bus import Bus
from hub.config import CameraBase, CameraConfig, HubConfig
from hub.errors import HubError
from hub.metrics import Metrics
from hub.redact import redact_url
from hub.state import LiveState

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 5.0


def progress(message: str) -> None:
    """Progress lines for long start-up work (model loading, media generation)."""
    log.info("%s", message)


def resolve_cameras(cameras: list[CameraBase], state_dir: Path) -> list[CameraBase]:
    """Turn ``demo://<clip>`` URLs into generated clips under the state dir (made once, cached)."""
    if not any(isinstance(c, CameraConfig) and c.url.startswith("demo://") for c in cameras):
        return list(cameras)
    from hub.demo.media import ensure_demo_media

    progress("preparing demo footage (the first start generates the clips)")
    media = ensure_demo_media(state_dir / "media", progress=progress)
    out: list[CameraBase] = []
    for cam in cameras:
        if not isinstance(cam, CameraConfig) or not cam.url.startswith("demo://"):
            out.append(cam)
            continue
        clip = cam.url.removeprefix("demo://")
        if clip not in media:
            raise HubError(f"camera {cam.id}: unknown demo clip {clip!r}; available: {sorted(media)}")
        out.append(cam.model_copy(update={"url": media[clip].resolve().as_uri(), "loop": True}))
    return out


class Hub:
    def __init__(self, cfg: HubConfig) -> None:
        self.cfg = cfg
        self.bus = Bus()
        self.metrics = Metrics()
        self.state = LiveState(cfg.cameras, self.bus, self.metrics)
        self.components: dict[str, str] = {}
        self.source_devices: dict[str, dict[str, Any]] = {}  # device rows reported by sources
        self.supervisors: dict[str, Any] = {}  # event sources (hub.sources.SourceSupervisor) by id
        self.http_url: str | None = None
        self.mqtt_url: str | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._signalled_at = 0.0

    # ----------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        """Ask a running hub to shut down (signal handlers call this)."""
        self._stop.set()

    async def run_until_signal(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        await self.run()

    def _on_signal(self, sig: signal.Signals) -> None:
        now = time.monotonic()
        if self._stop.is_set():
            if now - self._signalled_at < 1.0:
                return  # the same stop delivered twice (`timeout` signals the child and its group)
            log.warning("second %s: exiting now", sig.name)
            raise SystemExit(130)
        self._signalled_at = now
        log.info("%s received: shutting down (budget %.0f s)", sig.name, SHUTDOWN_BUDGET_S)
        self._stop.set()

    async def run(self) -> None:
        started = time.monotonic()
        state_dir = self.cfg.hub.state_dir.resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            db = await self._start_database(stack, state_dir)
            mqtt = await self._start_mqtt(stack)
            cameras = await asyncio.to_thread(resolve_cameras, self.cfg.cameras, state_dir)
            backend, fall_backend = await self._load_backends()
            stack.callback(backend.close)
            if fall_backend is not None:
                stack.callback(fall_backend.close)

            from alerts.evidence import EvidenceStore
            from detectors.analyzer import Analyzer

            readers = self._camera_feeds(cameras, mqtt, state_dir)
            analyzer = Analyzer(self.cfg.detect, cameras, backend, self.bus, metrics=self.metrics,
                                fall_backend=fall_backend)
            evidence_dir = state_dir / "evidence"
            evidence_dir.mkdir(exist_ok=True)

            def frames(camera_id: str) -> Any:
                res = analyzer.last_result(camera_id)
                return (res.frame, res.detections) if res is not None else None

            evidence = EvidenceStore(evidence_dir, frames)
            from hub.loop_wiring import ClosedLoop

            loop = ClosedLoop(self.cfg, self.bus, self.metrics, db, self.components)
            service = loop.start(mqtt, state_dir)

            tasks: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
                f"camera:{cid}": r.run for cid, r in readers.items()
            }
            self._add_source_tasks(mqtt, state_dir, tasks)
            tasks["analyzer"] = lambda: analyzer.run(readers)
            silences = loop.alert_tasks(cameras, readers, evidence, tasks)
            from hub.storage.layout import run_maintenance

            tasks["storage-maintenance"] = lambda: run_maintenance(db.pool, self.cfg.database.retention_days)
            tasks["reader-metrics"] = lambda: self._sync_reader_metrics(readers)
            device_hub = await self._add_mqtt_tasks(stack, mqtt, tasks)

            from hub.view import RuntimeView

            view = RuntimeView(self.cfg, self.bus, self.metrics, self.state, db, readers, analyzer,
                               device_hub, evidence_dir, self.components, self.source_devices,
                               self.supervisors, service=service, silences=silences)
            await self._start_web(stack, view)
            if self.http_url is not None and (patrol := loop.demo_patrol(self.http_url)) is not None:
                tasks["demo-patrol"] = patrol
            self._banner(cameras, time.monotonic() - started)
            # Start-up built large, long-lived object graphs (ONVIF WSDL types, models): move them out
            # of the collector's reach so full collections stay short (measured 62 -> ~26 ms).
            gc.freeze()
            self.ready.set()
            await self._run_tasks(tasks)
            log.info("stopping: flushing writes and stopping embedded services")
        log.info("hub stopped")

    def _context(self, mqtt: Any, state_dir: Path, source_id: str) -> Any:
        from adapters.base import AdapterContext

        directory = state_dir / "sources" / source_id
        return AdapterContext(mqtt=mqtt, state_dir=directory, metrics=self.metrics,
                              on_status=self._device_status,
                              options={"held_open_s": self.cfg.alerts.held_open_s})

    def _device_status(self, row: dict[str, Any]) -> None:
        from hub.bus import TOPIC_DEVICE

        if row.get("removed"):  # e.g. a Home Assistant discovery config withdrawn
            self.source_devices.pop(str(row.get("id")), None)
        else:
            self.source_devices[str(row.get("id"))] = row
        self.bus.publish(TOPIC_DEVICE, row)

    def _camera_feeds(self, cameras: list[CameraBase], mqtt: Any, state_dir: Path) -> dict[str, Any]:
        """One :class:`~hub.sources.CameraFeed` per enabled camera, each behind its adapter."""
        from adapters.registry import create
        from hub.sources import CameraFeed

        feeds = {}
        for cam in cameras:
            if not cam.enabled:
                continue
            adapter = create(cam, self._context(mqtt, state_dir, cam.id))
            feeds[cam.id] = CameraFeed(adapter, self.bus, self.components, width=self.cfg.detect.width,
                                       fps=self.cfg.detect.fps, on_status=self.state.camera_status)
        return feeds

    def _add_source_tasks(self, mqtt: Any, state_dir: Path,
                          tasks: dict[str, Callable[[], Coroutine[Any, Any, Any]]]) -> None:
        """Event sources from ``sources:`` (third-party and in-tree adapters)."""
        from adapters.registry import create, load_failures
        from hub.sources import SourceSupervisor, run_source

        for name, error in load_failures().items():
            self.components[f"adapter:{name}"] = "import_failed"
            log.error("adapter %s is unavailable: %s", name, error)
        for src in self.cfg.sources:
            if not src.enabled:
                continue
            adapter = create(src, self._context(mqtt, state_dir, src.id))
            supervisor = self.supervisors[src.id] = SourceSupervisor(adapter, self.components)
            tasks[f"source:{src.id}"] = functools.partial(run_source, adapter, self.bus, self.components,
                                                          supervisor)

    async def _add_mqtt_tasks(self, stack: contextlib.AsyncExitStack, mqtt: Any,
                              tasks: dict[str, Callable[[], Coroutine[Any, Any, Any]]]) -> Any:
        """Door/lock adapters, incidents out over MQTT, and the demo's simulated sensors."""
        from adapters.mqtt_devices import DeviceHub

        device_hub = DeviceHub(self.cfg.devices, self.bus, mqtt, metrics=self.metrics,
                               held_open_s=self.cfg.alerts.held_open_s)
        tasks["devices"] = device_hub.run
        if self.cfg.demo.village:
            await self._add_demo_village(stack, tasks)
        if not (self.cfg.demo.sensors and self.cfg.devices):
            return device_hub
        from adapters.mqtt_client import MqttClient
        from hub.demo_sensors import DemoSensors

        # The simulated devices are separate MQTT clients, like real village sensors.
        sim_id = f"{self.cfg.mqtt.client_id}-demo-sensors"
        sim = await stack.enter_async_context(MqttClient(self.mqtt_url, sim_id, clean_session=True))
        sensors = DemoSensors(self.cfg.devices, sim, self.cfg.demo.sensor_interval_s)

        async def simulate() -> None:
            # Like devices that were there before the hub: start once it listens.
            await device_hub.ready.wait()
            await sensors.run()

        tasks["demo-sensors"] = simulate
        return device_hub

    async def _add_demo_village(self, stack: contextlib.AsyncExitStack,
                                tasks: dict[str, Callable[[], Coroutine[Any, Any, Any]]]) -> None:
        """The demo's simulated village systems: one MQTT client each, like real village gateways."""
        from adapters.mqtt import MqttSourceConfig
        from adapters.mqtt_client import MqttClient
        from hub.demo_village import DemoVillage

        for src in self.cfg.sources:
            if not (isinstance(src, MqttSourceConfig) and src.dialect == "mapping" and src.enabled):
                continue
            client_id = f"{self.cfg.mqtt.client_id}-demo-{src.id}"
            url = src.url or self.mqtt_url
            client = await stack.enter_async_context(MqttClient(url, client_id, clean_session=True))
            village = DemoVillage(src, client, interval_s=self.cfg.demo.sensor_interval_s * 1.5)

            async def simulate(village: DemoVillage = village, connected: asyncio.Event =
                               self.supervisors[src.id].connected) -> None:
                await connected.wait()  # like gateways that were there before the hub
                await asyncio.sleep(1.0)  # the source subscribes right after it connects
                await village.run()

            tasks[f"demo-village:{src.id}"] = simulate

    async def _run_tasks(self, tasks: dict[str, Callable[[], Coroutine[Any, Any, Any]]]) -> None:
        async def supervised(name: str, factory: Callable[[], Coroutine[Any, Any, Any]]) -> None:
            # A failing component is logged and restarted with backoff; it never takes the hub down.
            delay = 1.0
            while True:
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("task %s failed; restarting in %.0f s", name, delay)
                    self.components[name] = "restarting"
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)

        async def stopper() -> None:
            await self._stop.wait()
            raise _Shutdown

        try:
            async with asyncio.TaskGroup() as tg:
                for name, factory in tasks.items():
                    tg.create_task(supervised(name, factory), name=name)
                tg.create_task(stopper(), name="stopper")
        except* _Shutdown:
            pass

    async def _sync_reader_metrics(self, readers: dict[str, Any], period_s: float = 1.0) -> None:
        """Mirror the readers' thread-side counters into Prometheus counters."""
        seen: dict[tuple[str, str], int] = {}
        while True:
            for cid, reader in readers.items():
                for name, counter in (("decoded", self.metrics.frames_decoded),
                                      ("dropped", self.metrics.frames_dropped)):
                    value = int(getattr(reader.stats, name))
                    delta = value - seen.get((cid, name), 0)
                    if delta > 0:
                        counter.labels(cid).inc(delta)
                    seen[(cid, name)] = value
            await asyncio.sleep(period_s)

    # ----------------------------------------------------------------- pieces
    async def _start_database(self, stack: contextlib.AsyncExitStack, state_dir: Path) -> Any:
        from hub.storage import Database

        url = self.cfg.database.url
        if not url:
            from hub.embedded_pg import EmbeddedPostgres

            progress("starting embedded PostgreSQL (no database.url configured)")
            url = await stack.enter_async_context(EmbeddedPostgres(state_dir))
            self.components["database"] = "embedded"
        else:
            self.components["database"] = "external"
        db = await stack.enter_async_context(
            Database(url, pool_size=self.cfg.database.pool_size, timescaledb=self.cfg.database.timescaledb,
                     metrics=self.metrics, retention=self.cfg.database.retention_days,
                     compress_after_days=self.cfg.database.compress_after_days)
        )
        await db.migrate()
        self.components["storage_mode"] = db.layout or "postgresql"
        log.info("database ready (%s, %s)", redact_url(url), self.components["storage_mode"])
        return db

    async def _start_mqtt(self, stack: contextlib.AsyncExitStack) -> Any:
        from adapters.mqtt_client import MqttClient

        url = self.cfg.mqtt.url
        if not url:
            from hub.embedded_broker import EmbeddedBroker

            progress("starting embedded MQTT broker (no mqtt.url configured)")
            url = await stack.enter_async_context(EmbeddedBroker())
            self.components["mqtt"] = "embedded"
        else:
            self.components["mqtt"] = "external"
        client = MqttClient(url, self.cfg.mqtt.client_id, clean_session=self.cfg.mqtt.clean_session,
                            keepalive=self.cfg.mqtt.keepalive)
        await stack.enter_async_context(client)
        self.mqtt_url = url
        log.info("MQTT broker %s", redact_url(url))
        return client

    async def _load_backends(self) -> tuple[Any, Any]:
        from detectors.backends import load_backend

        det = self.cfg.detect
        progress(f"loading detector backend {det.backend.type}")
        t0 = time.monotonic()
        backend = await asyncio.to_thread(load_backend, det.backend)
        fall = await asyncio.to_thread(load_backend, det.fall_backend) if det.fall_backend else None
        progress(f"detector ready in {time.monotonic() - t0:.1f} s")
        self.components["detector"] = "ok"
        return backend, fall

    async def _start_web(self, stack: contextlib.AsyncExitStack, view: Any) -> None:
        from hub.web import create_app

        app = create_app(view)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()

        async def cleanup() -> None:
            await asyncio.wait_for(runner.cleanup(), SHUTDOWN_BUDGET_S / 2)

        stack.push_async_callback(cleanup)
        site = web.TCPSite(runner, self.cfg.http.host, self.cfg.http.port)
        await site.start()
        port = self.cfg.http.port
        server = site._server  # bound socket: read the real port when port 0 was asked
        sockets = getattr(server, "sockets", None)
        if sockets:
            port = int(sockets[0].getsockname()[1])
        host = "127.0.0.1" if self.cfg.http.host in ("0.0.0.0", "::", "") else self.cfg.http.host
        self.http_url = f"http://{host}:{port}/"
        self.components["web"] = "ok"

    def _banner(self, cameras: list[CameraBase], took: float) -> None:
        lines = [
            "",
            "=" * 64,
            f"  sanwang-hub '{self.cfg.hub.name}' is running (started in {took:.1f} s)",
            f"  dashboard:  {self.http_url}",
            f"  API:        {self.http_url}api/health   metrics: {self.http_url}metrics",
            f"  cameras: {len(cameras)}   devices: {len(self.cfg.devices)}   "
            f"database: {self.components.get('database')}   mqtt: {self.components.get('mqtt')}",
            "  press Ctrl-C to stop",
            "=" * 64,
        ]
        print("\n".join(lines), flush=True)


class _Shutdown(Exception):
    """Raised inside the TaskGroup to cancel every task on a stop request."""

