"""MQTT topic names for incidents: ``<prefix>/<grid_code>/incidents`` (API contract v1).

Delivery itself is :class:`alerts.channels.mqtt.MqttChannel`, fed by the durable dispatch queue.
"""

from __future__ import annotations

import re

_TOPIC_UNSAFE = re.compile(r"[/+#\x00]")


def incident_topic(prefix: str, grid: object) -> str:
    """``<prefix>/<grid>/incidents``; MQTT wildcards and separators in a grid code become ``_``;
    an incident without a grid goes to ``<prefix>/unassigned/incidents``."""
    code = str(grid).strip() if grid not in (None, "") else ""
    code = _TOPIC_UNSAFE.sub("_", code) or "unassigned"
    return f"{prefix.rstrip('/')}/{code}/incidents"
