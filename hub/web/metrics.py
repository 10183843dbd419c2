"""``GET /metrics``: the hub's registry plus the web app's own gauges, in Prometheus text format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from hub.web.keys import EVENTS, FEEDS, VIEW, WEB_METRICS


@dataclass
class WebMetrics:
    """Web-app metrics live in their own registry (one per app), appended to the hub's at scrape."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.jpeg_encodes = Counter("hub_web_jpeg_encodes_total", "Annotated JPEGs encoded", ["camera"],
                                    registry=r)
        self.mjpeg_viewers = Gauge("hub_web_mjpeg_viewers", "Open live.mjpeg streams", ["camera"], registry=r)
        self.ws_clients = Gauge("hub_web_ws_clients", "Open /ws/events sockets", registry=r)
        self.ws_dropped = Gauge("hub_web_ws_dropped_messages", "Messages dropped for slow WebSocket clients "
                                "(oldest first)", registry=r)
        self.ws_sent = Gauge("hub_web_ws_sent_messages", "Messages sent to WebSocket clients", registry=r)

    def encoded(self) -> Callable[[str], None]:
        return lambda camera_id: self.jpeg_encodes.labels(camera_id).inc()


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    view = app[VIEW]
    for topic, depth in view.bus.queue_depths().items():
        view.metrics.queue_depth.labels(topic).set(depth)
    wm = app[WEB_METRICS]
    for camera_id, viewers in app[FEEDS].viewers().items():
        wm.mjpeg_viewers.labels(camera_id).set(viewers)
    events = app[EVENTS]
    wm.ws_clients.set(events.client_count)
    wm.ws_dropped.set(events.dropped())
    wm.ws_sent.set(events.sent)
    body = generate_latest(view.metrics.registry) + generate_latest(wm.registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp
