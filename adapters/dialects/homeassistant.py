"""Home Assistant MQTT discovery: devices appear from retained ``<prefix>/.../config`` messages.

Subscribed: ``<prefix>/+/+/config`` and ``<prefix>/+/+/+/config`` (``<component>/[<node_id>/]<object_id>``,
and device-based discovery ``<prefix>/device/<object_id>/config`` with a ``cmps`` map). Abbreviated keys
(``stat_t``, ``avty_t``, ``dev_cla``, ``val_tpl``, ``dev.ids``, ...) and the ``~`` base topic are expanded.
An empty (retained) config removes the entity; a device without entities is removed.

Understood entities (others are ignored and counted):

- ``binary_sensor`` with ``device_class`` door / opening / window / garage_door (``ON`` = open), tamper,
  battery (``ON`` = low), lock (``ON`` = unlocked), connectivity (``ON`` = online); ``payload_on`` /
  ``payload_off`` honoured;
- ``sensor`` with ``device_class: battery`` (percent);
- ``lock`` with ``state_topic``: ``state_locked`` / ``payload_lock`` → locked, ``state_unlocked`` /
  ``payload_unlock`` / ``state_open`` → unlocked, ``state_jammed`` → tamper (the lock is jammed);
- ``event`` (``{"event_type": "fingerprint_unlock", "method": ...}``): unlocks with their method, failed
  attempts, forced doors, as in the Zigbee2MQTT and JSON dialects.

``availability_topic`` / ``availability`` (with ``payload_available`` / ``payload_not_available``) report
the device online/offline (the latest message wins; ``availability_mode`` is not evaluated).
``value_template`` is supported only in the form ``{{ value_json.a.b[0] }}`` (or ``{{ value }}``); the
hub never evaluates Jinja. Entities are grouped into one hub device by
``device.identifiers``; a configured device whose ``topic`` is that identifier (or whose ``id`` is the
sanitized identifier) lends its id, name, grid, cameras and lock link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from adapters.dialects import (
    MISSING,
    Decoded,
    DeviceSpec,
    Dialect,
    PayloadError,
    Reading,
    check_size,
    get_path,
    parse_json,
    parse_json_object,
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


def _text(config: Mapping[str, Any], key: str, default: str) -> str:
    value = config.get(key, default)
    if isinstance(value, bool | int | float | str):
        return str(value)  # payload_on: false → "False", compared with rendered templates
    raise PayloadError(f"{key!r} must be a string, got {sample(value)}")


def _topic(config: Mapping[str, Any], key: str) -> str | None:
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


def _availability(config: Mapping[str, Any]) -> tuple[Availability, ...]:
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
        topic = _topic(item, "topic")
        if topic is None:
            raise PayloadError("an availability entry has no topic")
        out.append(Availability(topic, parse_template(item.get("value_template")),
                                _text(item, "payload_available", "online"),
                                _text(item, "payload_not_available", "offline")))
    return tuple(out)


class HomeAssistant(Dialect):
    """Devices from Home Assistant MQTT discovery (see the module docstring)."""

    name = "homeassistant"

    def __init__(self, configured: Iterable[DeviceSpec] = (), *, prefix: str = "homeassistant",
                 accept: Literal["all", "configured"] = "all", defaults: DeviceSpec | None = None) -> None:
        self.prefix = prefix.strip("/")
        self.accept = accept
        self.defaults = defaults or DeviceSpec(id="-", kind="door_contact")
        self.configured = list(configured)
        self.entities: dict[str, Entity] = {}
        self.specs: dict[str, DeviceSpec] = {}  # discovered devices by hub id
        self.base_specs: dict[str, DeviceSpec] = {}  # before the kind follows the entities
        self._reindex()

    # ---------------------------------------------------------------- routing
    def filters(self) -> list[str]:
        topics = sorted({*self._by_state, *self._by_availability})
        return [f"{self.prefix}/+/+/config", f"{self.prefix}/+/+/+/config", *topics]

    def decode(self, topic: str, payload: bytes) -> list[Decoded] | None:
        head = self.prefix + "/"
        if topic.startswith(head) and topic.endswith("/config"):
            key = topic[len(head):-len("/config")]
            if 2 <= len(key.split("/")) <= 3:
                return self._discover(key, payload)
        entities = self._by_state.get(topic, [])
        avails = self._by_availability.get(topic, [])
        if not entities and not avails:
            return None
        out: list[Decoded] = []
        device = ""
        try:
            for entity in entities:
                device = entity.device
                reading = self._state(entity, payload)
                if reading is not None:
                    out.append(Decoded(device, reading))
            seen: set[str] = set()
            for device, avail in avails:
                up = self._available(avail, payload)
                if up is not None and device not in seen:
                    seen.add(device)
                    out.append(Decoded(device, Reading(available=up), result="availability"))
        except PayloadError as exc:
            exc.device = device
            raise
        return out

    def _reindex(self) -> None:
        self._by_state: dict[str, list[Entity]] = {}
        self._by_availability: dict[str, list[tuple[str, Availability]]] = {}
        for e in self.entities.values():
            self._by_state.setdefault(e.state_topic, []).append(e)
            for a in e.availability:
                self._by_availability.setdefault(a.topic, []).append((e.device, a))

    # ---------------------------------------------------------------- discovery
    def _discover(self, key: str, payload: bytes) -> list[Decoded]:
        check_size(payload)
        new: list[tuple[Entity, DeviceSpec]] = []
        if payload.strip():  # parse everything before changing anything: a bad config keeps the old one
            config = expand(parse_json_object(payload))
            component = key.split("/", 1)[0]
            if component == "device":
                parts = config.get("components")
                if not isinstance(parts, dict):
                    raise PayloadError("device discovery needs a 'components' object")
                shared = {k: v for k, v in config.items() if k not in ("components", "origin")}
                for cid, part in parts.items():
                    if not isinstance(part, dict):
                        raise PayloadError(f"component {sample(cid)} must be an object")
                    merged = {**shared, **expand(part, config.get("~"))}
                    new += self._entity(f"{key}/{cid}", str(merged.get("platform", "")), merged)
            else:
                new += self._entity(key, component, config)
        children = key.startswith("device/")  # device discovery: its components are <key>/<id>
        old = [k for k in self.entities if k == key or (children and k.startswith(key + "/"))]
        touched = {self.entities[k].device for k in old} | {e.device for e, _ in new}
        for k in old:
            del self.entities[k]
        for entity, spec in new:
            self.entities[entity.key] = entity
            self.base_specs[spec.id] = spec
        self._reindex()
        out = [self._refresh(device) for device in sorted(touched)]
        return out or [Decoded("", result="ignored")]

    def _entity(self, key: str, component: str, config: dict[str, Any]) -> list[tuple[Entity, DeviceSpec]]:
        role = self._role(component, config)
        spec = None if role is None else self._device(key, config)
        if role is None or spec is None:
            return []
        device = spec.id
        state_topic = _topic(config, "state_topic")
        if state_topic is None:
            raise PayloadError(f"{component} {key} has no state_topic", device=device)
        return [(Entity(
            key=key, device=device, role=role, state_topic=state_topic,
            template=parse_template(config.get("value_template")),
            on=_text(config, "payload_on", "ON"), off=_text(config, "payload_off", "OFF"),
            locked=(_text(config, "state_locked", "LOCKED"), _text(config, "payload_lock", "LOCK")),
            unlocked=(_text(config, "state_unlocked", "UNLOCKED"), _text(config, "payload_unlock", "UNLOCK"),
                      _text(config, "state_open", "OPEN"), _text(config, "payload_open", "OPEN")),
            jammed=(_text(config, "state_jammed", "JAMMED"),),
            moving=(_text(config, "state_locking", "LOCKING"), _text(config, "state_unlocking", "UNLOCKING"),
                    _text(config, "state_opening", "OPENING")),
            availability=_availability(config),
        ), spec)]

    @staticmethod
    def _role(component: str, config: Mapping[str, Any]) -> str | None:
        device_class = config.get("device_class")
        if component == "binary_sensor":
            return BINARY_ROLES.get(device_class) if isinstance(device_class, str) else None
        if component == "sensor":
            return "battery" if device_class == "battery" else None
        return component if component in ("lock", "event") else None

    def _device(self, key: str, config: Mapping[str, Any]) -> DeviceSpec | None:
        info = config.get("device")
        info = expand(info) if isinstance(info, dict) else {}
        ids = info.get("identifiers")
        idents = [i for i in (ids if isinstance(ids, list) else [ids]) if isinstance(i, str) and i]
        unique = config.get("unique_id")
        fallback = unique if isinstance(unique, str) and unique else key.split("/", 1)[1]
        ident = idents[0] if idents else fallback
        names = {ident, *idents, *key.split("/")[1:-1]}
        base = next((s for s in self.configured if s.topic in names or s.id == sanitize(ident)), None)
        previous = self.base_specs.get(base.id if base is not None else sanitize(ident))
        if base is None:
            if self.accept == "configured":
                return None
            name = info.get("name") if isinstance(info.get("name"), str) else config.get("name")
            if not (isinstance(name, str) and name):
                name = previous.name if previous is not None else ""
            d = self.defaults
            base = DeviceSpec(id=sanitize(ident), kind="door_contact", topic=ident, dialect=self.name,
                              name=name, grid=d.grid, offline_after_s=d.offline_after_s, source=d.source,
                              cameras=d.cameras)
        extra = {k: info[k] for k in ("manufacturer", "model", "sw_version") if isinstance(info.get(k), str)}
        known = previous.extra if previous is not None else {}
        return replace(base, dialect=self.name, extra={**known, **base.extra, **extra})

    def _refresh(self, device: str) -> Decoded:
        roles = {e.role for e in self.entities.values() if e.device == device}
        base = self.base_specs.get(device)
        if not roles or base is None:
            self.specs.pop(device, None)
            self.base_specs.pop(device, None)
            return Decoded(device, removed=True, result="discovery")
        lock = bool(roles & {"lock", "lock_binary"}) or base.kind == "smart_lock"
        spec = replace(base, kind="smart_lock" if lock else "door_contact")
        changed = self.specs.get(device) != spec
        self.specs[device] = spec
        return Decoded(device, spec=spec if changed else None, result="discovery")

    # ---------------------------------------------------------------- states
    def _state(self, e: Entity, payload: bytes) -> Reading | None:
        if e.role == "event":
            return self._event(e, payload)
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

    @staticmethod
    def _event(e: Entity, payload: bytes) -> Reading | None:
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

    @staticmethod
    def _available(a: Availability, payload: bytes) -> bool | None:
        text = render(payload, a.template)
        if text is None:
            return None
        if text == a.available:
            return True
        if text == a.not_available:
            return False
        raise PayloadError(f"availability {sample(text)} is neither {a.available!r} nor {a.not_available!r}")
