"""``WS /ws/events``: bus topics ``incident``, ``camera``, ``device`` plus periodic ``kpi``.

Each client owns a bounded bus subscription (drop-oldest), so a slow browser loses old
messages instead of stalling publishers. aiohttp's heartbeat pings every client; on app
shutdown every socket is closed with 1001 (going away) so Ctrl-C finishes quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from hub.bus import (
    TOPIC_CAMERA,
    TOPIC_DEVICE,
    TOPIC_INCIDENT,
    TOPIC_INCIDENT_UPDATE,
    TOPIC_NOTICE,
    Subscription,
)
from hub.web.jsonio import dumps
from hub.web.view import CLOSED_STATES

if TYPE_CHECKING:
    from hub.web.view import HubView

log = logging.getLogger(__name__)

TOPICS = (TOPIC_INCIDENT, TOPIC_INCIDENT_UPDATE, TOPIC_CAMERA, TOPIC_DEVICE, TOPIC_NOTICE)
TOPIC_KPI = "kpi"
HEARTBEAT_S = 20.0
CLOSE_TIMEOUT_S = 2.0
KPI_INCIDENT_WINDOW = 1000


def _payload(message: Any) -> Any:
    to_json = getattr(message, "to_json", None)
    return to_json() if callable(to_json) else message


class EventStream:
    """Fan-out of bus events to WebSocket clients."""

    def __init__(self, view: HubView) -> None:
        self._view = view
        self._clients: dict[web.WebSocketResponse, Subscription] = {}
        self._kpi_task: asyncio.Task[None] | None = None
        self.dropped_closed = 0  # messages dropped for clients that have gone
        self.sent = 0
        self.closing = False

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def client_stats(self) -> list[dict[str, int]]:
        """Per connected client: messages waiting and dropped (oldest first) so far."""
        return [{"queued": sub.queue.qsize(), "dropped": sub.dropped} for sub in self._clients.values()]

    def dropped(self) -> int:
        return self.dropped_closed + sum(sub.dropped for sub in self._clients.values())

    async def kpi(self) -> dict[str, Any]:
        """Counts for the dashboard header (cameras online, open incidents ...)."""
        cams = self._view.cameras()
        devs = self._view.devices()
        data: dict[str, Any] = {
            "at": time.time(),
            "cameras_total": len(cams),
            "cameras_online": sum(1 for c in cams if c.get("status") == "online"),
            "devices_total": len(devs),
            "devices_online": sum(1 for d in devs if d.get("status") not in ("offline",)),
        }
        try:
            recent = await self._view.list_incidents(None, None, None, None, KPI_INCIDENT_WINDOW)
        except Exception as exc:  # the header still shows cameras when storage is down
            log.warning("KPI: listing incidents failed: %s", exc)
            return data
        open_ = [i for i in recent if i.get("state") not in CLOSED_STATES]
        data["open_incidents"] = len(open_)
        data["open_emergency"] = sum(1 for i in open_ if i.get("class") == "emergency")
        data["incidents_listed"] = len(recent)
        return data

    async def _kpi_loop(self) -> None:
        interval = self._view.cfg.http.kpi_interval_s
        while True:
            await asyncio.sleep(interval)
            if not self._clients:
                continue
            try:
                data = await self.kpi()
            except Exception:
                log.exception("KPI computation failed")
                continue
            for sub in list(self._clients.values()):
                sub.offer(TOPIC_KPI, data)

    def start(self) -> None:
        if self._kpi_task is None:
            self._kpi_task = asyncio.create_task(self._kpi_loop(), name="ws-kpi")

    async def _pump(self, ws: web.WebSocketResponse, sub: Subscription) -> None:
        while not ws.closed:
            topic, message = await sub.get()
            try:
                # Updates of an incident travel as the same message type (contract v1).
                kind = TOPIC_INCIDENT if topic == TOPIC_INCIDENT_UPDATE else topic
                await ws.send_str(dumps({"type": kind, "data": _payload(message)}))
            except ConnectionError:
                return
            self.sent += 1

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.closing:
            raise web.HTTPServiceUnavailable(reason="shutting down")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, timeout=CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        sub = self._view.bus.subscribe(*TOPICS, maxsize=self._view.cfg.http.ws_queue)
        self._clients[ws] = sub
        try:
            sub.offer(TOPIC_KPI, await self.kpi())
        except Exception:
            log.exception("initial KPI for a WebSocket client failed")
        pump = asyncio.create_task(self._pump(ws, sub), name="ws-pump")
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data == "ping":
                    await ws.send_str('{"type":"pong","data":{}}')
                elif msg.type == WSMsgType.ERROR:
                    log.debug("WebSocket error: %s", ws.exception())
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self._view.bus.unsubscribe(sub)
            self._clients.pop(ws, None)
            self.dropped_closed += sub.dropped
        return ws

    async def close(self) -> None:
        """App shutdown: stop KPIs, close every socket (1001 going away)."""
        self.closing = True
        if self._kpi_task is not None:
            self._kpi_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._kpi_task
            self._kpi_task = None
        sockets = list(self._clients)
        if sockets:
            await asyncio.gather(
                *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets),
                return_exceptions=True,
            )
