"""The ``json`` dialect: event messages from village access-control and intercom systems.

Flat: ``{"event": "door_open", "method": "card", "ts": 1718000000, "battery": 80}``.
Nested: ``{"device": "gate-3", "event": {"type": "unlock", "method": "face",
"ts": "2024-06-10T22:14:03+08:00"}}`` or ``{"data": {"event": "forced"}}``.
Events (aliases accepted): ``door_open``, ``door_close``, ``forced``, ``held_open``, ``unlock``,
``lock``, ``fail``, ``fail_limit``, ``tamper``, ``tamper_cleared``, ``low_battery``, ``battery``,
``heartbeat``, ``online``, ``offline`` (see :data:`EVENTS`).
``ts`` is epoch seconds or milliseconds or ISO 8601.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters.dialects import (
    DeviceKind,
    PayloadError,
    Reading,
    opt_battery,
    opt_bool,
    opt_str,
    sample,
    unlock_method,
)

#: Event names (and aliases) → the Reading fields they imply. ``unlocked_by: "?"`` is replaced by the
#: message's method. Also the vocabulary of the declarative mapping dialect.
EVENTS: dict[str, dict[str, Any]] = {}
for _names, _fields in (
    (("door_open", "open", "opened", "door_opened"), {"door_open": True}),
    (("door_close", "close", "closed", "door_closed"), {"door_open": False}),
    (("forced", "door_forced", "forced_open", "break_in", "alarm", "intrusion"), {"forced": True}),
    (("held_open", "door_held_open", "open_timeout"), {"held_open": True}),
    (("unlock", "unlocked", "lock_unlocked", "access_granted", "open_success"),
     {"locked": False, "unlocked_by": "?"}),
    (("lock", "locked", "lock_locked"), {"locked": True}),
    (("fail", "failed", "unlock_failed", "access_denied", "wrong_password", "auth_fail"),
     {"failed_attempt": True}),
    (("fail_limit", "too_many_failures", "lockout", "failed_attempts", "lock_failed_attempts"),
     {"failed_attempt": True, "failed_limit": True}),
    (("tamper", "tampered"), {"tamper": True}),
    (("tamper_cleared", "tamper_restored"), {"tamper": False}),
    (("low_battery", "battery_low"), {"battery_low": True}),
    (("online", "device_online"), {"available": True}),
    (("offline", "device_offline"), {"available": False}),
    (("battery", "heartbeat", "status"), {}),
):
    for _name in _names:
        EVENTS[_name] = _fields


def parse_ts(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise PayloadError("'ts' must be a number or an ISO 8601 string")
    if isinstance(value, int | float):
        if not -1e15 < value < 1e15:
            raise PayloadError(f"'ts' out of range: {sample(value)}")
        ts = float(value)
        if ts > 1e11:  # milliseconds
            ts /= 1000.0
        if not 0 < ts < 1e10:
            raise PayloadError(f"'ts' out of range: {sample(value)}")
        return ts
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            stamp = dt.timestamp() if dt.tzinfo is not None else None
        except (ValueError, OverflowError):
            raise PayloadError(f"'ts' is not ISO 8601: {sample(value)}") from None
        if stamp is None:
            raise PayloadError("'ts' needs a time zone (e.g. +08:00 or Z)")
        return stamp
    raise PayloadError(f"'ts' must be a number or an ISO 8601 string, got {type(value).__name__}")


def _event_body(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """Merge a nested ``event``/``data``/``payload`` object over the top level."""
    for key in ("event", "data", "payload"):
        inner = obj.get(key)
        if isinstance(inner, dict):
            merged = {k: v for k, v in obj.items() if k != key}
            merged.update(inner)
            if "type" in inner and "event" not in inner:
                merged["event"] = inner["type"]
            return merged
    return obj


def decode(obj: Mapping[str, Any], kind: DeviceKind) -> Reading:
    body = _event_body(obj)
    event = opt_str(body, "event") or opt_str(body, "type")
    fields: dict[str, Any] = {}
    method = opt_str(body, "method")
    if event is not None:
        name = event.strip().lower()
        if name not in EVENTS:
            raise PayloadError(f"unknown event {sample(event)}")
        fields.update(EVENTS[name])
        if "unlocked_by" in fields:
            fields["unlocked_by"] = unlock_method(method)
        fields["action"] = name
    door = opt_str(body, "door")
    if door is not None and door.lower() in ("open", "closed"):
        fields["door_open"] = door.lower() == "open"
    locked = opt_bool(body, "locked")
    if locked is not None:
        fields["locked"] = locked
    tamper = opt_bool(body, "tamper")
    if tamper is not None:
        fields["tamper"] = tamper or bool(fields.get("tamper"))
    battery = opt_battery(body)
    if battery is not None:
        fields["battery"] = battery
    if event is None and not fields:
        raise PayloadError("no 'event' and nothing else this hub understands")
    fields["device_ts"] = parse_ts(body.get("ts"))
    return Reading(**fields)
