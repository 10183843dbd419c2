"""What travels over MQTT, independent of the MQTT library: received messages and outgoing payloads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

Payload = bytes | str | dict[str, Any] | list[Any]


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """One received message, independent of the MQTT library."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def encode_payload(payload: Payload) -> bytes:
    """bytes as is, str as UTF-8, dict/list as compact JSON."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()
