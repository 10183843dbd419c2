"""WebSocket notices: the patrol page and the dashboard get ``{"type": "notice", "data": ...}`` on
``/ws/events``. Live only (a page that is not open gets nothing); the page loads its open tasks
from the API when it connects, and the durable channels (MQTT, webhooks, robots) carry the rest."""

from __future__ import annotations

from typing import ClassVar

from alerts.channels.base import Channel, Notice
from hub.bus import TOPIC_NOTICE, Bus


class WsChannel(Channel):
    type: ClassVar[str] = "ws"

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def send(self, notice: Notice) -> None:
        self.bus.publish(TOPIC_NOTICE, notice.to_json())

    def describe(self) -> str:
        return "ws /ws/events"
