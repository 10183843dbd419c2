"""MQTT out (API contract v1): ``<prefix>/<grid_code>/incidents``, JSON, QoS 1.

The payload is the incident (contract v1 dict) with the transition that caused the message in
``notice`` (``key`` — the idempotency key —, ``event``, ``state``, ``at``, ``level``, ``note``).
A notice counts as delivered once the broker acknowledged it (PUBACK); while the hub's MQTT
connection is down the channel fails retryably and the durable queue keeps the notice.
"""

from __future__ import annotations

from typing import Any, ClassVar

from adapters.mqtt_client import MqttClient
from alerts.channels.base import Channel, Notice
from alerts.mqtt_out import incident_topic
from hub.errors import DeliveryError


def mqtt_payload(notice: Notice) -> dict[str, Any]:
    meta = {"key": notice.key, "event": notice.event, "state": notice.state, "action": notice.action,
            "at": notice.at, "level": notice.level, "note": notice.note}
    return {**notice.incident, "notice": meta}


class MqttChannel(Channel):
    type: ClassVar[str] = "mqtt"

    def __init__(self, client: MqttClient, topic_prefix: str = "sanwang", *,
                 ack_timeout_s: float = 10.0) -> None:
        self.client = client
        self.topic_prefix = topic_prefix
        self.ack_timeout_s = ack_timeout_s

    async def send(self, notice: Notice) -> None:
        if not self.client.online:
            raise DeliveryError(f"MQTT broker {self.client.safe_url} is not connected", retryable=True)
        topic = incident_topic(self.topic_prefix, notice.incident.get("grid"))
        await self.client.publish(topic, mqtt_payload(notice), qos=1)
        if not await self.client.drain(self.ack_timeout_s):
            raise DeliveryError(f"MQTT broker {self.client.safe_url} did not acknowledge in "
                                f"{self.ack_timeout_s:.0f} s", retryable=True)

    def describe(self) -> str:
        return f"mqtt {self.client.safe_url} {self.topic_prefix}/<grid>/incidents"
