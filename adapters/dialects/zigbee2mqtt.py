"""Zigbee2MQTT payloads for door contacts and smart locks.

Zigbee2MQTT publishes a device's whole cached state on every update, so the same values repeat;
:class:`adapters.mqtt_devices.DeviceHub` reacts to *changes*. What the converters publish:

- door/window contact: ``{"contact": true, "battery": 87, "tamper": false, "battery_low": false,
  "linkquality": 120, "voltage": 3000}`` — ``contact: false`` means the magnet is apart: the door is open.
  ``battery_low`` is the only battery report of some sensors.
- lock (ZCL DoorLock, ``lock_operation_event``): ``{"state": "LOCK"|"UNLOCK", "lock_state":
  "locked"|"not_fully_locked"|"unlocked", "action": "unlock", "action_source_name": "keypad"|"rf"|
  "manual"|"rfid", "action_user": 3, "battery": 90}``. Actions include ``lock``, ``unlock``,
  ``key_unlock``, ``manual_unlock``, ``auto_lock``, ``lock_failure_invalid_pin_or_id``,
  ``unlock_failure_invalid_pin_or_id``, ``..._invalid_schedule``; lock alarms include
  ``tamper_alarm_wrong_code_entry_limit``, ``tamper_alarm_front_escutcheon_removed`` and
  ``forced_door_open_under_door_locked_condition``. Tuya/Aqara-style locks use names such as
  ``fingerprint_unlock``, ``password_unlock``, ``rfid_card_open``, ``door_forced``. The action is cleared
  to ``""`` after it was published, which means nothing.
- some locks also report their own door sensor as ``door_state: "open"|"closed"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.dialects import (
    DeviceKind,
    PayloadError,
    Reading,
    opt_battery,
    opt_bool,
    opt_str,
    unlock_method,
)

_FORCED = ("forced", "break_in", "pry", "door_open_alarm", "intrusion")
_LIMIT = ("entry_limit", "too_many", "multiple_fail", "frozen")
_FAILED = ("fail", "invalid", "wrong", "denied", "error")
_TAMPER = ("tamper", "escutcheon")


def classify_action(action: str, method_hint: str | None) -> dict[str, Any]:
    """Reading fields implied by a lock ``action`` string."""
    a = action.strip().lower()
    if not a or a in ("unknown", "none"):
        return {}
    if any(w in a for w in _FORCED):
        return {"forced": True}
    if any(w in a for w in _LIMIT):
        return {"failed_limit": True, "failed_attempt": True}
    if any(w in a for w in _FAILED):
        return {"failed_attempt": True}
    if any(w in a for w in _TAMPER):
        return {"tamper": True}
    if a.startswith("door_"):
        if "open" in a:
            return {"door_open": True}
        if "clos" in a:
            return {"door_open": False}
        return {}
    if "unlock" in a or a == "open" or a.endswith("_open"):
        return {"unlocked_by": unlock_method(method_hint, a), "locked": False}
    if "lock" in a:
        return {"locked": True}
    return {}


def decode(obj: Mapping[str, Any], kind: DeviceKind) -> Reading:
    fields: dict[str, Any] = {}
    contact = opt_bool(obj, "contact")
    if contact is not None:
        fields["door_open"] = not contact
    door_state = opt_str(obj, "door_state")
    if door_state is not None and door_state.lower() in ("open", "closed"):
        fields["door_open"] = door_state.lower() == "open"
    if kind == "smart_lock":
        state = opt_str(obj, "state")
        if state is not None and state.upper() in ("LOCK", "UNLOCK"):
            fields["locked"] = state.upper() == "LOCK"
        lock_state = opt_str(obj, "lock_state")
        if lock_state is not None and lock_state.lower() in ("locked", "unlocked", "not_fully_locked"):
            fields["locked"] = lock_state.lower() == "locked"
    action = opt_str(obj, "action")
    source = opt_str(obj, "action_source_name")
    if action:
        implied = classify_action(action, source)
        if "locked" in implied and "locked" in fields:
            implied.pop("locked")  # the reported lock_state is the truth; the action adds the unlock
        fields.update(implied)
        fields["action"] = action
    tamper = opt_bool(obj, "tamper")
    if tamper is not None:
        fields["tamper"] = tamper or bool(fields.get("tamper"))
    battery = opt_battery(obj)
    if battery is not None:
        fields["battery"] = battery
    battery_low = opt_bool(obj, "battery_low")
    if battery_low is not None:
        fields["battery_low"] = battery_low
    if "availability" in obj:
        avail = obj["availability"]
        if not isinstance(avail, str) or avail.lower() not in ("online", "offline"):
            raise PayloadError("'availability' must be online/offline")
        fields["available"] = avail.lower() == "online"
    return Reading(**fields)
