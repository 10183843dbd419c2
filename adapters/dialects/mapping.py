"""A declarative dialect: a village system's own MQTT format described in configuration, not code.

Each rule names a topic pattern, where the fields are and how the system's values translate::

    mapping:
      - topic: village/+device/event          # MQTT wildcards; +name / #name capture a topic level
        fields:                                # target → field path in the JSON payload
          event: data.type                     # dotted paths, list indices: events[0].type or events.0.type
          method: data.method
          ts: data.time
          battery: status.battery
        values:                                # target → {system value: hub value}
          event: {"1": door_opened, "2": door_closed, "3": door_forced, "4": lock_unlocked,
                  "5": unlock_failed, "9": ignore}
          method: {"1": fingerprint, "2": password, "3": card, "4": remote, "5": key}
      - topic: village/+device/lwt
        payload: text                          # the whole payload is the value "$"
        fields: {online: $}
        values: {online: {up: true, down: false}}

Targets: ``device`` (the device id; default: the topic capture named ``device``), ``event`` (one of the
JSON dialect's event names, see :data:`adapters.dialects.json_events.EVENTS`, or ``ignore``), ``method``
(fingerprint, password, card, remote, key, face, manual... normalised), ``door`` (open/closed),
``locked`` (locked/unlocked), ``battery`` (0..100), ``battery_low``, ``tamper``, ``online`` (booleans:
true/false, 1/0, ON/OFF, open/closed...) and ``ts`` (epoch s or ms, or ISO 8601 with a zone). A path
``$`` is the whole payload, ``topic:<name>`` a topic capture. Values are matched as text (``1`` → "1",
``true`` → "true"), exactly first, then ignoring case. An event value that maps to nothing is a bad
payload (counted and logged with a sample), which is how an integrator finds unmapped codes.
``auto_devices`` stop at ``max_devices`` devices (configured ones included): a message for one more is
counted as ``unknown_device`` and logged once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.dialects import (
    MISSING,
    Decoded,
    DeviceKind,
    DeviceSpec,
    Dialect,
    PayloadError,
    Reading,
    get_path,
    parse_json,
    parse_path,
    payload_text,
    sample,
    text_of,
    unlock_method,
)
from adapters.dialects.json_events import EVENTS, parse_ts
from adapters.dialects.tasmota import on_off

Target = Literal["device", "event", "method", "door", "locked", "battery", "battery_low", "tamper",
                 "online", "ts"]
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
_CAPTURE = re.compile(r"^[+#][A-Za-z_][A-Za-z0-9_]*$")
MAX_DEVICES = 2000  # auto_devices never create more (anyone who can publish could make them)
_cached_path = functools.lru_cache(maxsize=4096)(parse_path)
#: Words each boolean reading accepts besides on/off, true/false, 1/0 ("unlock" is no availability)
_WORDS: dict[str, dict[str, bool]] = {
    "locked": {"locked": True, "lock": True, "unlocked": False, "unlock": False},
    "door": {"open": True, "opened": True, "closed": False, "close": False},
    "online": {"online": True, "offline": False},
    "battery_low": {"low": True, "ok": False},
}


class MappingRule(BaseModel):
    """One topic pattern of a village system and how its payloads map to hub readings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(..., description="Topic pattern: MQTT wildcards; +name / #name capture levels "
                       "(e.g. village/+device/event).")
    payload: Literal["json", "text"] = Field("json", description="json, or text (the value is '$').")
    fields: dict[Target, str] = Field(default_factory=dict, description="Target → field path "
                                      "(data.events[0].type), '$' (whole payload) or 'topic:<capture>'.")
    values: dict[Target, dict[str, Any]] = Field(default_factory=dict, description="Target → value map "
                                                 "{system value: hub value}.")
    kind: DeviceKind = Field("door_contact", description="Kind of devices this rule creates (auto_devices).")
    auto_devices: bool = Field(False, description="Create devices for ids that are not configured "
                               "(otherwise counted as unknown_device), up to the source's max_devices.")

    @field_validator("topic")
    @classmethod
    def _pattern(cls, topic: str) -> str:
        levels = topic.split("/")
        for i, level in enumerate(levels):
            if level.startswith("#") and i != len(levels) - 1:
                raise ValueError("'#' may only be the last level")
            if ("+" in level or "#" in level) and level not in ("+", "#") and not _CAPTURE.match(level):
                raise ValueError(f"bad topic level {level!r}: use +, #, +name or #name")
        return topic

    @field_validator("fields")
    @classmethod
    def _paths(cls, fields: dict[Target, str]) -> dict[Target, str]:
        for path in fields.values():
            if path != "$" and not path.startswith("topic:"):
                parse_path(path)  # raises ValueError with the path in the message
        return fields

    @model_validator(mode="after")
    def _device_source(self) -> MappingRule:
        captures = self.captures()
        for path in self.fields.values():
            if path.startswith("topic:") and path[6:] not in captures:
                raise ValueError(f"{path!r} names no capture of {self.topic!r} "
                                 f"(captures: {sorted(captures)})")
        if "device" not in self.fields and "device" not in captures:
            raise ValueError("say where the device id is: a +device topic level or fields.device")
        return self

    def captures(self) -> set[str]:
        return {level[1:] for level in self.topic.split("/") if _CAPTURE.match(level)}

    def filter(self) -> str:
        return "/".join(level[0] if _CAPTURE.match(level) else level for level in self.topic.split("/"))

    def match(self, topic: str) -> dict[str, str] | None:
        """The named captures if ``topic`` matches, else ``None``."""
        levels, parts = self.topic.split("/"), topic.split("/")
        captured: dict[str, str] = {}
        for i, level in enumerate(levels):
            if level.startswith("#"):
                if len(level) > 1:
                    captured[level[1:]] = "/".join(parts[i:])
                return captured
            if i >= len(parts):
                return None
            if level.startswith("+"):
                if len(level) > 1:
                    captured[level[1:]] = parts[i]
            elif level != parts[i]:
                return None
        return captured if len(levels) == len(parts) else None


def _lookup(rule: MappingRule, target: Target, value: Any) -> Any:
    table = rule.values.get(target)
    if not table or isinstance(value, dict | list):
        return value
    key = text_of(value)
    if key in table:
        return table[key]
    folded = key.casefold()
    return next((v for k, v in table.items() if k.casefold() == folded), value)


def _flag(value: Any, target: str) -> bool:
    words = _WORDS.get(target, {})
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    return on_off(value, target)


class MappingDialect(Dialect):
    """Routes and decodes messages by :class:`MappingRule` s (first matching rule wins)."""

    name = "mapping"

    def __init__(self, rules: Iterable[MappingRule], devices: Iterable[DeviceSpec] = (), *,
                 defaults: DeviceSpec | None = None, max_devices: int = MAX_DEVICES) -> None:
        self.rules = list(rules)
        self.known: dict[str, DeviceSpec] = {d.id: d for d in devices}
        self.defaults = defaults or DeviceSpec(id="-", kind="door_contact")
        self.max_devices = max_devices  # configured devices always count; auto_devices stop here

    def filters(self) -> list[str]:
        return list(dict.fromkeys(rule.filter() for rule in self.rules))

    def decode(self, topic: str, payload: bytes) -> list[Decoded] | None:
        for rule in self.rules:
            captured = rule.match(topic)
            if captured is not None:
                return self._decode(rule, captured, payload)
        return None

    def _decode(self, rule: MappingRule, captured: Mapping[str, str], payload: bytes) -> list[Decoded]:
        body: Any = payload_text(payload) if rule.payload == "text" else parse_json(payload)
        values: dict[str, Any] = {}
        for target, path in rule.fields.items():
            if path == "$":
                raw = body
            elif path.startswith("topic:"):
                raw = captured[path[6:]]
            else:
                raw = get_path(body, _cached_path(path))
            if raw is not MISSING and raw is not None:
                values[target] = _lookup(rule, target, raw)
        device = values.pop("device", None)
        if device is None:
            device = _lookup(rule, "device", captured.get("device"))
        if not isinstance(device, str) or not ID_PATTERN.match(device):
            raise PayloadError(f"device id {sample(device)} is missing or not a valid id")
        spec = self.known.get(device)
        new = None
        if spec is None:
            if not rule.auto_devices:
                raise PayloadError(f"unknown device {device!r}", "unknown_device")
            if len(self.known) >= self.max_devices:
                raise PayloadError(f"device limit reached ({self.max_devices} devices; max_devices): "
                                   f"{device!r} not added", "unknown_device",
                                   log_key=f"{self.name}:max_devices")
            d = self.defaults
            new = spec = replace(d, id=device, kind=rule.kind, topic=device, dialect=self.name, name="")
            self.known[device] = spec
        try:
            reading = self._reading(values)
        except PayloadError as exc:
            exc.device = device
            raise
        if reading is None:
            return [Decoded(device, spec=new, result="ignored")]
        return [Decoded(device, reading, spec=new)]

    @staticmethod
    def _reading(values: Mapping[str, Any]) -> Reading | None:
        fields: dict[str, Any] = {}
        method = values.get("method")
        if method is not None and not isinstance(method, str | int):
            raise PayloadError(f"'method' must be a string, got {sample(method)}")
        event = values.get("event")
        if event is not None:
            name = text_of(event).strip().lower()
            if name == "ignore":
                return None
            if name not in EVENTS:
                raise PayloadError(f"event value {sample(event)} is not mapped to a hub event")
            fields.update(EVENTS[name], action=name)
            if "unlocked_by" in fields:
                fields["unlocked_by"] = unlock_method(None if method is None else str(method))
        for target, key in (("door", "door_open"), ("locked", "locked"), ("tamper", "tamper"),
                            ("battery_low", "battery_low"), ("online", "available")):
            if target in values:
                fields[key] = _flag(values[target], target)
        if method is not None and fields.get("locked") is False and "unlocked_by" not in fields:
            fields["method"] = unlock_method(str(method))
        if "battery" in values:
            raw, level = values["battery"], None
            if isinstance(raw, str | int | float) and not isinstance(raw, bool):
                try:
                    level = float(raw)
                except (ValueError, OverflowError):
                    level = None
            if level is None or not 0 <= level <= 100:
                raise PayloadError(f"'battery' must be a number 0..100, got {sample(values['battery'])}")
            fields["battery"] = level
        if "ts" in values:
            fields["device_ts"] = parse_ts(values["ts"])
        return Reading(**fields)
