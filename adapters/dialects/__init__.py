"""Pure payload decoders: one module per dialect, each turning one JSON object into a :class:`Reading`.

A :class:`Reading` is what one message says about a door or lock (door open?, locked?, a successful
unlock and how, a failed attempt, a forced-door alarm, tamper, battery, availability). Decoders are
stateless; :class:`adapters.mqtt_devices.DeviceHub` keeps per-device state and turns changes into
:class:`hub.events.SourceEvent` s. Decoders raise :class:`PayloadError` for anything malformed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

MAX_PAYLOAD_BYTES = 64 * 1024

DeviceKind = Literal["door_contact", "smart_lock"]


class PayloadError(ValueError):
    """A device payload is malformed. ``result`` is the metrics label (bad_json, bad_payload, too_large)."""

    def __init__(self, message: str, result: str = "bad_payload") -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True, slots=True)
class Reading:
    """What one device message reports. ``None`` = the message did not say."""

    door_open: bool | None = None
    locked: bool | None = None
    unlocked_by: str | None = None  # a successful unlock happened, by this method
    failed_attempt: bool = False
    failed_limit: bool = False  # the lock itself reports too many wrong codes
    forced: bool = False  # explicit forced-door / break-in alarm
    tamper: bool | None = None
    battery: float | None = None
    available: bool | None = None
    held_open: bool = False  # the device itself reports the door held open
    action: str | None = None
    device_ts: float | None = None

    @property
    def empty(self) -> bool:
        return self == Reading()


def parse_json_object(payload: bytes) -> Mapping[str, Any]:
    """Size-check and parse ``payload`` as a JSON object."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", "too_large")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"not JSON: {exc}", "bad_json") from None
    if not isinstance(obj, dict):
        raise PayloadError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def decode_availability(payload: bytes) -> bool:
    """Zigbee2MQTT availability: ``online``/``offline`` (legacy) or ``{"state": "online"}``."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("availability payload too large", "too_large")
    try:
        text = payload.decode().strip()
    except UnicodeDecodeError:
        raise PayloadError("availability payload is not UTF-8", "bad_payload") from None
    value: object = text
    if text.startswith("{"):
        value = parse_json_object(payload).get("state")
    if isinstance(value, str) and value.lower() in ("online", "offline"):
        return value.lower() == "online"
    raise PayloadError(f"availability must be online/offline, got {text[:40]!r}")


# ---------------------------------------------------------------- field helpers shared by dialects
def opt_bool(obj: Mapping[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise PayloadError(f"{key!r} must be true/false, got {type(value).__name__}")
    return value


def opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def opt_battery(obj: Mapping[str, Any], key: str = "battery") -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise PayloadError(f"{key!r} must be a number 0..100, got {value!r:.40}")
    return float(value)


_METHODS: tuple[tuple[str, str], ...] = (
    ("finger", "fingerprint"),
    ("face", "face"),
    ("password", "password"),
    ("passcode", "password"),
    ("pin", "password"),
    ("keypad", "password"),
    ("code", "password"),
    ("rfid", "card"),
    ("card", "card"),
    ("nfc", "card"),
    ("key", "key"),
    ("manual", "manual"),
    ("remote", "remote"),
    ("app", "remote"),
    ("rf", "remote"),
    ("zigbee", "remote"),
    ("auto", "auto"),
)


def unlock_method(*hints: str | None) -> str:
    """Normalise how a lock was opened: fingerprint, password, card, key, manual, remote, face, auto."""
    for hint in hints:
        if not hint:
            continue
        h = hint.lower()
        for needle, method in _METHODS:
            if needle in h:
                return method
    return next((h.lower() for h in hints if h), "unknown")


Decoder = Callable[[Mapping[str, Any], DeviceKind], Reading]


def decoder_for(dialect: str) -> Decoder:
    from adapters.dialects import json_events, zigbee2mqtt

    decoders: dict[str, Decoder] = {"zigbee2mqtt": zigbee2mqtt.decode, "json": json_events.decode}
    return decoders[dialect]
