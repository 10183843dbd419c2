"""Tasmota devices: door contacts on a switch input, electric strikes on a relay, battery sensors.

A device's ``topic`` is its Tasmota ``%topic%`` (e.g. ``tasmota_5A3F21``). With the default FullTopic
``%prefix%/%topic%/`` Tasmota publishes:

- ``tele/<topic>/LWT``: ``Online`` / ``Offline`` (retained; the broker publishes ``Offline`` as the
  last will when the device drops off) → availability;
- ``tele/<topic>/SENSOR``: ``{"Time": "...", "Switch1": "ON", "Battery": 87}`` every TelePeriod and on
  changes; door contacts report ``Switch1`` (``ON`` = open by default, see ``open_state``) or a ``Door``
  field (``Open``/``Closed``, ``ON``/``OFF``, 1/0), possibly one level down inside a sensor object
  (``{"DS": {"Door": "Open", "BatteryPercentage": 90}}``); ``Tamper`` likewise;
- ``tele/<topic>/STATE``: ``{"POWER": "ON", "Wifi": {...}}`` — periodic relay state;
- ``stat/<topic>/RESULT``: ``{"POWER": "ON"}`` or ``{"Switch1": {"Action": "ON"}}`` after a change;
- ``stat/<topic>/POWER``: ``ON`` / ``OFF`` (plain text).

For a ``smart_lock`` the relay drives the strike: relay ``ON`` means unlocked (opened remotely, from
the app or a Tasmota rule), ``OFF`` locked. Every other message (``INFO1``, ``UPTIME``, ...) only says
the device is alive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from adapters.dialects import (
    Decoded,
    DeviceSpec,
    Dialect,
    PayloadError,
    Reading,
    opt_battery,
    parse_json_object,
    payload_text,
    sample,
)

_TRUE = {"ON", "OPEN", "OPENED", "TRUE", "1"}
_FALSE = {"OFF", "CLOSED", "CLOSE", "FALSE", "0"}


def on_off(value: object, key: str) -> bool:
    """``ON``/``OFF`` (also Open/Closed, true/false, 1/0) → bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().upper()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise PayloadError(f"{key!r} must be ON/OFF, got {sample(value)}")


class Tasmota(Dialect):
    """Routes ``tele/<topic>/...`` and ``stat/<topic>/...`` to devices (see the module docstring)."""

    name = "tasmota"

    def __init__(
        self,
        devices: Iterable[DeviceSpec],
        *,
        full_topic: str = "%prefix%/%topic%/",
        door_switch: str = "Switch1",
        open_state: str = "ON",
        tamper_switch: str | None = None,
        relay: str = "POWER",
        lwt_online: str = "Online",
        lwt_offline: str = "Offline",
    ) -> None:
        if "%prefix%" not in full_topic or "%topic%" not in full_topic:
            raise ValueError(f"full_topic {full_topic!r} needs %prefix% and %topic%")
        self.door_switch = door_switch
        self.open_state = open_state.strip().upper()
        self.tamper_switch = tamper_switch
        self.relays = (relay, relay + "1") if relay == "POWER" else (relay,)
        self.lwt_online = lwt_online.lower()
        self.lwt_offline = lwt_offline.lower()
        self.heads: dict[str, tuple[DeviceSpec, str]] = {}  # "tele/<topic>/" → (device, prefix)
        for spec in devices:
            for prefix in ("tele", "stat"):
                head = full_topic.replace("%prefix%", prefix).replace("%topic%", spec.topic)
                self.heads[head if head.endswith("/") else head + "/"] = (spec, prefix)

    def filters(self) -> list[str]:
        return [head + "+" for head in self.heads]

    def decode(self, topic: str, payload: bytes) -> list[Decoded] | None:
        head, _, last = topic.rpartition("/")
        entry = self.heads.get(head + "/")
        if entry is None:
            return None
        spec, prefix = entry
        try:
            if prefix == "tele" and last == "LWT":
                return [Decoded(spec.id, Reading(available=self._lwt(payload)), result="availability")]
            if last in self.relays:
                return [Decoded(spec.id, self._relay(spec, payload_text(payload), last))]
            if last in ("SENSOR", "STATE", "RESULT"):
                return [Decoded(spec.id, self._fields(spec, parse_json_object(payload)))]
            payload_text(payload)  # INFO1, UPTIME, STATUS...: alive, but still size- and UTF-8-checked
            return [Decoded(spec.id, Reading())]
        except PayloadError as exc:
            exc.device = spec.id
            raise

    def _lwt(self, payload: bytes) -> bool:
        text = payload_text(payload).lower()
        if text in (self.lwt_online, "online"):
            return True
        if text in (self.lwt_offline, "offline"):
            return False
        raise PayloadError(f"LWT must be {self.lwt_online}/{self.lwt_offline}, got {sample(text)}")

    def _relay(self, spec: DeviceSpec, value: object, key: str) -> Reading:
        on = on_off(value, key)
        if spec.kind != "smart_lock":
            return Reading()
        action = "relay_on" if on else "relay_off"
        return Reading(locked=not on, method="remote" if on else None, action=action)

    def _fields(self, spec: DeviceSpec, obj: Mapping[str, Any]) -> Reading:
        fields: dict[str, Any] = {}
        for relay in self.relays:
            if relay in obj:
                relay_reading = self._relay(spec, obj[relay], relay)
                if relay_reading.locked is not None:
                    fields.update(locked=relay_reading.locked, method=relay_reading.method,
                                  action=relay_reading.action)
                break
        switch = obj.get(self.door_switch)
        if isinstance(switch, dict):  # RESULT with SwitchTopic: {"Switch1": {"Action": "ON"}}
            switch = switch.get("Action")
        if switch is not None:
            if not isinstance(switch, str):
                raise PayloadError(f"{self.door_switch!r} must be ON/OFF, got {sample(switch)}")
            fields["door_open"] = switch.strip().upper() == self.open_state
        scopes = [obj, *(v for v in obj.values() if isinstance(v, dict))]
        for scope in scopes:
            for key in ("Door", "Contact"):
                if key in scope and "door_open" not in fields:
                    fields["door_open"] = on_off(scope[key], key)
            tamper_key = "Tamper"
            if self.tamper_switch and self.tamper_switch in scope:
                tamper_key = self.tamper_switch
            if tamper_key in scope and "tamper" not in fields:
                fields["tamper"] = on_off(scope[tamper_key], tamper_key)
            for key in ("Battery", "BatteryPercentage"):
                if key in scope and "battery" not in fields:
                    fields["battery"] = opt_battery(scope, key)
        return Reading(**fields)
