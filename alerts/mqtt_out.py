"""Publish incidents to MQTT: ``<prefix>/<grid_code>/incidents`` (JSON, QoS 1; API contract v1).

Every dict on bus topic ``incident`` (API shape, at least ``id`` and ``grid``) is published through the
hub's :class:`adapters.mqtt_client.MqttClient`, which queues while the broker is away. An incident
without a grid goes to ``<prefix>/unassigned/incidents``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from adapters.mqtt_client import MqttClient
from hub.bus import TOPIC_INCIDENT, Bus

log = logging.getLogger(__name__)

_TOPIC_UNSAFE = re.compile(r"[/+#\x00]")


def incident_topic(prefix: str, grid: object) -> str:
    """``<prefix>/<grid>/incidents``; MQTT wildcards and separators in a grid code become ``_``."""
    code = str(grid).strip() if grid not in (None, "") else ""
    code = _TOPIC_UNSAFE.sub("_", code) or "unassigned"
    return f"{prefix.rstrip('/')}/{code}/incidents"


class IncidentPublisher:
    def __init__(self, bus: Bus, client: MqttClient, topic_prefix: str = "sanwang") -> None:
        self.bus = bus
        self.client = client
        self.topic_prefix = topic_prefix
        self.published = 0
        self.skipped = 0

    async def run(self) -> None:
        async with self.bus.subscription(TOPIC_INCIDENT) as sub:
            async for _, incident in sub:
                await self.publish(incident)

    async def publish(self, incident: Any) -> None:
        if not isinstance(incident, dict) or "id" not in incident:
            self.skipped += 1
            log.warning("incident message without an id ignored: %.80r", incident)
            return
        topic = incident_topic(self.topic_prefix, incident.get("grid"))
        await self.client.publish(topic, incident, qos=1)
        self.published += 1
