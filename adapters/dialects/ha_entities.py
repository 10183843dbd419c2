"""Home Assistant discovery entities: reading one ``config`` payload, and reading its state payloads.

Pure functions for :mod:`adapters.dialects.homeassistant` (which keeps the routing table and groups
entities into devices): abbreviated keys and the ``~`` base topic expanded, the supported
``value_template`` forms, an :class:`Entity` built from a config, and its state, event and availability
payloads decoded into :class:`adapters.dialects.Reading` s. Everything raises :class:`PayloadError` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.dialects import (
    MISSING,
    PayloadError,
    Reading,
    get_path,
    parse_json,
    parse_path,
    payload_text,
    sample,
    unlock_method,
)
from adapters.dialects.json_events import EVENTS
from adapters.dialects.zigbee2mqtt import classify_action

ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "cmps": "components", "dev": "device", "dev_cla": "device_class",
    "evt_typ": "event_types", "obj_id": "object_id", "p": "platform", "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available", "pl_on": "payload_on", "pl_off": "payload_off",
    "pl_lock": "payload_lock", "pl_unlk": "payload_unlock", "pl_open": "payload_open",
    "stat_t": "state_topic", "stat_locked": "state_locked", "stat_unlocked": "state_unlocked",
    "stat_jam": "state_jammed", "stat_locking": "state_locking", "stat_unlocking": "state_unlocking",
    "stat_open": "state_open", "stat_opening": "state_opening", "uniq_id": "unique_id",
    "val_tpl": "value_template", "t": "topic", "ids": "identifiers", "mf": "manufacturer", "mdl": "model",
    "sw": "sw_version", "cns": "connections",
}
DOOR_CLASSES = {"door", "opening", "window", "garage_door"}
BINARY_ROLES = {"tamper": "tamper", "battery": "battery_low", "lock": "lock_binary",
                "connectivity": "connectivity", **dict.fromkeys(DOOR_CLASSES, "door")}
LOCK_ROLES = frozenset({"lock", "lock_binary"})  # entities that make their device a smart lock
_PATH_PART = r"""(?:\.[A-Za-z_][A-Za-z0-9_]*|\[(?:\d+|'[^']*'|"[^"]*")\])"""
_TEMPLATE = re.compile(r"^\{\{-?\s*value_json(" + _PATH_PART + r"+)\s*-?\}\}$")
_RAW = re.compile(r"^\{\{-?\s*value\s*-?\}\}$")
Path = tuple[str | int, ...]


def parse_template(text: object) -> Path | None:
    """``{{ value_json.a.b[0] }}`` → the path; ``None`` (or ``{{ value }}``) → the raw payload."""
    if text is None or (isinstance(text, str) and _RAW.match(text.strip())):
        return None
    m = _TEMPLATE.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise PayloadError(f"value_template {sample(text, 60)} is not supported "
                           "(only {{ value_json.x }} and {{ value }})")
    return parse_path(m.group(1).lstrip("."))


def render(payload: bytes, template: Path | None) -> str | None:
    """The payload through a simple template, as Home Assistant compares it; ``None`` = no value."""
    if template is None:
        return payload_text(payload)
    value = get_path(parse_json(payload), template)
    if value is MISSING or value is None:
        return None
    if isinstance(value, dict | list):
        raise PayloadError(f"template value is a {type(value).__name__}, expected a scalar")
    return str(value)  # True → "True", as Jinja renders it


def expand(config: Mapping[str, Any], base: str | None = None) -> dict[str, Any]:
    """Long key names, and the ``~`` base topic substituted into every ``*_topic`` / ``topic``."""
    out = {ABBREVIATIONS.get(k, k): v for k, v in config.items()}
    base = out.get("~", base) if isinstance(out.get("~", base), str) else None
    for key, value in out.items():
        if base is not None and isinstance(value, str) and (key.endswith("_topic") or key == "topic"):
            out[key] = base + value[1:] if value.startswith("~") else (
                value[:-1] + base if value.endswith("~") else value)
    return out


def text_option(config: Mapping[str, Any], key: str, default: str) -> str:
    value = config.get(key, default)
    if isinstance(value, bool | int | float | str):
        return str(value)  # payload_on: false → "False", compared with rendered templates
    raise PayloadError(f"{key!r} must be a string, got {sample(value)}")


def topic_option(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c in value for c in "+#\0"):
        raise PayloadError(f"{key!r} must be a topic without wildcards, got {sample(value)}")
    return value


def sanitize(identifier: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", identifier).strip("_")[:80] or "device"


@dataclass(frozen=True, slots=True)
class Availability:
    topic: str
    template: Path | None
    available: str
    not_available: str


@dataclass(frozen=True, slots=True)
class Entity:
    key: str  # discovery topic without /config (plus the component id for device discovery)
    device: str
    role: str  # door tamper battery_low lock_binary connectivity battery lock event
    state_topic: str
    template: Path | None
    on: str = "ON"
    off: str = "OFF"
    locked: tuple[str, ...] = ()
    unlocked: tuple[str, ...] = ()
    jammed: tuple[str, ...] = ()
    moving: tuple[str, ...] = ()
    availability: tuple[Availability, ...] = ()

    def topics(self) -> list[str]:
        """Every topic this entity listens on (state first)."""
        return [self.state_topic, *(a.topic for a in self.availability)]


def role_of(component: str, config: Mapping[str, Any]) -> str | None:
    """What an entity means to the hub, or ``None`` for entities the hub does not understand."""
    device_class = config.get("device_class")
    if component == "binary_sensor":
        return BINARY_ROLES.get(device_class) if isinstance(device_class, str) else None
    if component == "sensor":
        return "battery" if device_class == "battery" else None
    return component if component in ("lock", "event") else None


def availability_of(config: Mapping[str, Any]) -> tuple[Availability, ...]:
    items: list[Mapping[str, Any]] = []
    if config.get("availability_topic") is not None:
        payloads = {k: config[k] for k in ("payload_available", "payload_not_available") if k in config}
        items.append({"topic": config["availability_topic"],
                      "value_template": config.get("availability_template"), **payloads})
    listed = config.get("availability") or []
    if not isinstance(listed, list) or not all(isinstance(i, dict) for i in listed):
        raise PayloadError("'availability' must be a list of objects")
    items += [expand(i, config.get("~")) for i in listed]
    out = []
    for item in items:
        topic = topic_option(item, "topic")
        if topic is None:
            raise PayloadError("an availability entry has no topic")
        out.append(Availability(topic, parse_template(item.get("value_template")),
                                text_option(item, "payload_available", "online"),
                                text_option(item, "payload_not_available", "offline")))
    return tuple(out)


def make_entity(key: str, component: str, role: str, device: str, config: Mapping[str, Any]) -> Entity:
    """The entity an (expanded) config describes; raises :class:`PayloadError` naming ``device``."""
    state_topic = topic_option(config, "state_topic")
    if state_topic is None:
        raise PayloadError(f"{component} {key} has no state_topic", device=device)
    return Entity(
        key=key, device=device, role=role, state_topic=state_topic,
        template=parse_template(config.get("value_template")),
        on=text_option(config, "payload_on", "ON"), off=text_option(config, "payload_off", "OFF"),
        locked=(text_option(config, "state_locked", "LOCKED"), text_option(config, "payload_lock", "LOCK")),
        unlocked=(text_option(config, "state_unlocked", "UNLOCKED"),
                  text_option(config, "payload_unlock", "UNLOCK"),
                  text_option(config, "state_open", "OPEN"), text_option(config, "payload_open", "OPEN")),
        jammed=(text_option(config, "state_jammed", "JAMMED"),),
        moving=(text_option(config, "state_locking", "LOCKING"),
                text_option(config, "state_unlocking", "UNLOCKING"),
                text_option(config, "state_opening", "OPENING")),
        availability=availability_of(config),
    )


# ---------------------------------------------------------------- state payloads
def state_reading(e: Entity, payload: bytes) -> Reading | None:
    """What a message on ``e.state_topic`` says; ``None``: nothing (unknown, unavailable, no value)."""
    if e.role == "event":
        return event_reading(e, payload)
    text = render(payload, e.template)
    if text is None or text in ("", "None", "unknown", "unavailable"):
        return None
    if e.role == "battery":
        try:
            level = float(text)
        except ValueError:
            raise PayloadError(f"battery must be a number, got {sample(text)}") from None
        if not 0 <= level <= 100:
            raise PayloadError(f"battery must be 0..100, got {sample(text)}")
        return Reading(battery=level)
    if e.role == "lock":
        if text in e.locked:
            return Reading(locked=True)
        if text in e.unlocked:
            return Reading(locked=False)
        if text in e.jammed:
            return Reading(tamper=True, action="lock_jammed")
        if text in e.moving:
            return Reading()
        raise PayloadError(f"lock state {sample(text)} is none of {e.locked + e.unlocked + e.jammed}")
    if text not in (e.on, e.off):
        raise PayloadError(f"state {sample(text)} is neither {e.on!r} nor {e.off!r}")
    on = text == e.on
    if e.role == "door":
        return Reading(door_open=on)
    if e.role == "tamper":
        return Reading(tamper=on)
    if e.role == "battery_low":
        return Reading(battery_low=on)
    if e.role == "lock_binary":
        return Reading(locked=not on)
    return Reading(available=on)  # connectivity


def event_reading(e: Entity, payload: bytes) -> Reading | None:
    obj = parse_json(payload)
    if e.template is not None:
        obj = get_path(obj, e.template)
    if not isinstance(obj, dict):
        raise PayloadError("an event payload must be a JSON object with 'event_type'")
    kind, method = obj.get("event_type"), obj.get("method", obj.get("source"))
    if not isinstance(kind, str) or not (method is None or isinstance(method, str)):
        raise PayloadError(f"'event_type' must be a string, got {sample(kind)}")
    name = kind.strip().lower()
    fields = dict(EVENTS[name] if name in EVENTS else classify_action(name, method))
    if fields.get("unlocked_by") is not None:
        fields["unlocked_by"] = unlock_method(method, name if name not in EVENTS else None)
    return Reading(**fields, action=name)


def availability_reading(a: Availability, payload: bytes) -> bool | None:
    text = render(payload, a.template)
    if text is None:
        return None
    if text == a.available:
        return True
    if text == a.not_available:
        return False
    raise PayloadError(f"availability {sample(text)} is neither {a.available!r} nor {a.not_available!r}")
