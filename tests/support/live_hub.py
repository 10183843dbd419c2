"""A whole hub (no cameras) on its own loop in a background thread, reached over real HTTP.

:class:`LiveHub` runs :class:`hub.app.Hub` — the real web app around the real ``RuntimeView``, its
``IncidentService``, the delivery dispatcher and the SLA timers — on a fresh PostgreSQL schema and the
local Mosquitto; it listens on ``127.0.0.1:0`` within about a second. Tests stay synchronous:
:meth:`LiveHub.call` is a blocking HTTP client (urllib) and :meth:`LiveHub.run` runs a coroutine on
the hub's loop. Incidents are set up by a second, real ``IncidentService`` on the same database
(:meth:`LiveHub.open_in_state`), the way the alert engine opens them; its clock can be moved ahead
so that the SLA timers supervise an incident (:data:`START_STATES`).

:func:`staff` is the people of ``tests/alerts/loop_support.py`` plus a department member with a
grid (``env``, 生态环境, G2), an ``integrator`` and an ``admin``; :data:`TOKENS` their bearer tokens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from alerts.people import Caller, Directory
from alerts.service import IncidentService
from alerts.settings import PersonConfig
from hub.app import Hub
from hub.bus import Bus
from hub.config import HubConfig
from hub.storage import Database
from hub.storage import dispatch as jobs_sql
from tests.adapters.mqtt_support import require_mosquitto
from tests.alerts.loop_support import GRIDS, people, person
from tests.support.pg import fresh_schema

T = TypeVar("T")

#: States :meth:`LiveHub.open_in_state` can prepare ("supervised_accepted": supervised after accepting).
START_STATES = ("dispatched", "accepted", "resolved", "closed", "false_alarm", "supervised",
                "supervised_accepted")


def staff(channels: list[dict[str, Any]] | None = None) -> list[PersonConfig]:
    """loop_support's people (w1 p1 w2 lead duty cop op) plus env, integ and adm."""
    ch = channels if channels is not None else [{"type": "ws"}]
    return [*people(ch),
            person("env", ["department"], ["G2"], department="生态环境", channels=ch,
                   token="env-token-0123456789"),
            person("integ", ["integrator"], [], token="integ-token-0123456789"),
            person("adm", ["admin"], [], token="adm-token-0123456789")]


TOKENS = {p.id: p.token.get_secret_value() for p in staff() if p.token is not None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: No proxy from the environment between the tests and a hub on loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def hub_config(db_url: str, state_dir: str, *, anonymous: str = "none", team: list[PersonConfig],
               dispatch: dict[str, Any] | None = None) -> HubConfig:
    """No cameras or devices; the local Mosquitto with a topic prefix of its own."""
    tag = uuid.uuid4().hex[:10]
    return HubConfig.model_validate({
        "hub": {"name": "api-test", "state_dir": state_dir},
        "http": {"host": "127.0.0.1", "port": 0, "anonymous": anonymous},
        "database": {"url": db_url, "timescaledb": "off"},
        "mqtt": {"url": require_mosquitto(), "client_id": f"api-{tag}", "clean_session": True,
                 "topic_prefix": f"test-api-{tag}"},
        "grids": [g.model_dump() for g in GRIDS],
        "people": [p.model_dump() | {"token": p.token.get_secret_value() if p.token else None} for p in team],
        "dispatch": dispatch or {},
    })


@contextlib.contextmanager
def running_hub(*, anonymous: str = "none", team: list[PersonConfig] | None = None,
                dispatch: dict[str, Any] | None = None) -> Iterator[LiveHub]:
    """A started :class:`LiveHub` on a fresh schema and state dir; stopped and dropped afterwards."""
    with fresh_schema() as url, tempfile.TemporaryDirectory(prefix="hub-state-") as state:
        live = LiveHub(hub_config(url, state, anonymous=anonymous, team=team or staff(), dispatch=dispatch))
        try:
            yield live.start()
        finally:
            live.stop()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class SetupClock:
    """Real time plus ``offset`` (moved ahead to make SLA timers fall due)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class LiveHub:
    def __init__(self, cfg: HubConfig) -> None:
        self.cfg = cfg
        self.hub = Hub(cfg)
        self.url = ""
        self.clock = SetupClock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-hub", daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self._service: IncidentService | None = None
        self._db: Database | None = None
        self._running: concurrent.futures.Future[None] | None = None
        self._seq = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LiveHub:
        self._thread.start()
        self._running = asyncio.run_coroutine_threadsafe(self.hub.run(), self.loop)
        self.run(self._until_ready(), timeout=60)
        assert self.hub.http_url is not None
        self.url = self.hub.http_url.rstrip("/")
        return self

    async def _until_ready(self) -> None:
        running = self._running
        assert running is not None
        while not self.hub.ready.is_set():
            if running.done():
                running.result()  # start-up failed: raise its error here
                raise AssertionError("the hub stopped before it was ready")
            await asyncio.sleep(0.02)
        self._db = await self._stack.enter_async_context(Database(str(self.cfg.database.url),
                                                                  timescaledb="off"))
        self._service = IncidentService(self._db, Directory(self.cfg.people, self.cfg.grids),
                                        self.cfg.dispatch, Bus(), clock=self.clock, mqtt=False)

    def stop(self) -> None:
        if not self._thread.is_alive():
            self.loop.close()
            return
        try:
            self.run(self._stack.aclose())
            self.loop.call_soon_threadsafe(self.hub.stop)
            if self._running is not None:
                self._running.result(timeout=15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=15)
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the hub's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- HTTP ------------------------------------------------------------------------------------
    def call(self, method: str, path: str, *, token: str | None = None, body: object = None) -> Reply:
        """One real HTTP request; ``token`` goes out as ``Authorization: Bearer``."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with _DIRECT.open(req, timeout=15) as resp:
                status, raw, headers = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            status, raw, headers = err.code, err.read(), dict(err.headers)
        return Reply(status, json.loads(raw) if raw else None, headers)

    # -- incidents -------------------------------------------------------------------------------
    @property
    def service(self) -> IncidentService:
        assert self._service is not None, "start() first"
        return self._service

    @property
    def db(self) -> Database:
        assert self._db is not None, "start() first"
        return self._db

    def open_in_state(self, state: str = "dispatched", *, cls: str = "general", grid: str = "G1",
                      department: str = "") -> str:
        """A new incident brought to ``state`` (one of :data:`START_STATES`) by the duty leader."""
        return self.run(self._open_in_state(state, cls, grid, department))

    async def _open_in_state(self, state: str, cls: str, grid: str, department: str) -> str:
        assert state in START_STATES, state
        svc = self.service
        self._seq += 1
        inc_id = f"inc-{uuid.uuid4().hex[:8]}-{self._seq}"
        await svc.open(id=inc_id, kind="door_forced", cls=cls, title=f"test {cls} in {grid}", grid=grid,
                       department=department)
        duty = Caller.of(svc.directory.by_id["duty"])
        plan = {"dispatched": [], "accepted": ["accept"], "resolved": ["accept", "resolve"],
                "closed": ["accept", "resolve", "close"], "false_alarm": ["false_alarm"],
                "supervised": [], "supervised_accepted": ["accept"]}[state]
        for action in plan:
            await svc.act(inc_id, action, duty, note="setup", satisfaction="satisfied")
        if state.startswith("supervised"):
            # past every accept_s and resolve_s: the accept timer (escalating once) and the resolve timer
            # fire — and so does every other timer due by then, of any incident of this hub
            policies = self.cfg.dispatch.classes.values()
            self.clock.offset = max(max(p.accept_s, p.resolve_s) for p in policies) + 60
            try:
                await svc.fire_due(limit=10_000)
            finally:
                self.clock.offset = 0.0
        got = await self.db.get_incident(inc_id)
        assert got is not None and got["state"] == state.removesuffix("_accepted"), got
        return inc_id

    def dead_jobs(self, incident_id: str | None = None) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            async with self.db.pool.connection() as conn:
                return await jobs_sql.list_jobs(conn, state="dead", incident_id=incident_id, limit=1000)
        return self.run(read())

    def wait_dead_job(self, incident_id: str, timeout_s: float = 15.0) -> dict[str, Any]:
        """The first dead delivery job of ``incident_id`` (the hub's dispatcher gives up on it)."""
        deadline = time.monotonic() + timeout_s
        while not (dead := self.dead_jobs(incident_id)):
            assert time.monotonic() < deadline, f"no dead job for {incident_id} within {timeout_s} s"
            time.sleep(0.05)
        return dead[0]
