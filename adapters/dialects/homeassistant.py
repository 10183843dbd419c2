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

Bounded and incremental: a config message touches only its own entities and devices (the routing
table is updated in place, never rebuilt), a device has at most :data:`MAX_ENTITIES` understood
entities, and at most ``max_devices`` devices exist (configured ones are always accepted); a config
for one device more is refused with :class:`PayloadError` ``unknown_device`` (counted; logged once).
Parsing configs and decoding state payloads live in :mod:`adapters.dialects.ha_entities`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal

from adapters.dialects import (
    Decoded,
    DeviceSpec,
    Dialect,
    PayloadError,
    Reading,
    check_size,
    parse_json_object,
    sample,
)
from adapters.dialects.ha_entities import (
    LOCK_ROLES,
    Availability,
    Entity,
    availability_reading,
    expand,
    make_entity,
    role_of,
    sanitize,
    state_reading,
)

MAX_DEVICES = 2000
MAX_ENTITIES = 32  # understood entities per device (a door/lock has a handful)


class HomeAssistant(Dialect):
    """Devices from Home Assistant MQTT discovery (see the module docstring)."""

    name = "homeassistant"

    def __init__(self, configured: Iterable[DeviceSpec] = (), *, prefix: str = "homeassistant",
                 accept: Literal["all", "configured"] = "all", defaults: DeviceSpec | None = None,
                 max_devices: int = MAX_DEVICES) -> None:
        self.prefix = prefix.strip("/")
        self.accept = accept
        self.defaults = defaults or DeviceSpec(id="-", kind="door_contact")
        self.max_devices = max_devices
        self.configured = list(configured)
        self._configured_at: dict[str, int] = {}  # topic (HA identifier) → first configured index
        self._configured_id_at: dict[str, int] = {}
        for i, spec in enumerate(self.configured):
            if spec.topic:
                self._configured_at.setdefault(spec.topic, i)
            self._configured_id_at.setdefault(spec.id, i)
        self.entities: dict[str, Entity] = {}
        self.specs: dict[str, DeviceSpec] = {}  # discovered devices by hub id
        self.base_specs: dict[str, DeviceSpec] = {}  # before the kind follows the entities
        self._parts: dict[str, tuple[str, ...]] = {}  # discovery key → the entity keys it defined
        self._roles: dict[str, Counter[str]] = {}  # device → its entities' roles (counts)
        self._by_state: dict[str, dict[str, Entity]] = {}  # state topic → entity key → entity
        self._by_availability: dict[str, dict[str, list[tuple[str, Availability]]]] = {}
        self._topics: Counter[str] = Counter()  # every state/availability topic, by entities using it

    # ---------------------------------------------------------------- routing
    def filters(self) -> list[str]:
        return [f"{self.prefix}/+/+/config", f"{self.prefix}/+/+/+/config", *self._topics]

    def decode(self, topic: str, payload: bytes) -> list[Decoded] | None:
        head = self.prefix + "/"
        if topic.startswith(head) and topic.endswith("/config"):
            key = topic[len(head):-len("/config")]
            if 2 <= len(key.split("/")) <= 3:
                return self._discover(key, payload)
        entities = self._by_state.get(topic)
        avails = self._by_availability.get(topic)
        if not entities and not avails:
            return None
        out: list[Decoded] = []
        device = ""
        try:
            for entity in (entities or {}).values():
                device = entity.device
                reading = state_reading(entity, payload)
                if reading is not None:
                    out.append(Decoded(device, reading))
            seen: set[str] = set()
            for device, avail in (pair for pairs in (avails or {}).values() for pair in pairs):
                up = availability_reading(avail, payload)
                if up is not None and device not in seen:
                    seen.add(device)
                    out.append(Decoded(device, Reading(available=up), result="availability"))
        except PayloadError as exc:
            exc.device = device
            raise
        return out

    def _index(self, e: Entity) -> None:
        self._by_state.setdefault(e.state_topic, {})[e.key] = e
        for a in e.availability:
            self._by_availability.setdefault(a.topic, {}).setdefault(e.key, []).append((e.device, a))
        self._topics.update(e.topics())
        self._roles.setdefault(e.device, Counter())[e.role] += 1

    def _unindex(self, e: Entity) -> None:
        _drop(self._by_state, e.state_topic, e.key)
        for a in e.availability:
            _drop(self._by_availability, a.topic, e.key)
        self._topics.subtract(e.topics())
        for topic in e.topics():
            if self._topics[topic] <= 0:
                del self._topics[topic]
        roles = self._roles.get(e.device)
        if roles is not None:
            roles[e.role] -= 1
            if roles[e.role] <= 0:
                del roles[e.role]

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
        old = [self.entities[k] for k in self._parts.get(key, ()) if k in self.entities]
        self._check_limits(old, new)
        touched = {e.device for e in old}
        for e in old:
            del self.entities[e.key]
            self._unindex(e)
        self._parts.pop(key, None)
        if new:
            self._parts[key] = tuple(e.key for e, _ in new)
        for entity, spec in new:
            shadowed = self.entities.get(entity.key)
            if shadowed is not None:  # defined by another discovery topic before: the latest wins
                self._unindex(shadowed)
                touched.add(shadowed.device)
            self.entities[entity.key] = entity
            self._index(entity)
            self.base_specs[spec.id] = spec
            touched.add(entity.device)
        out = [self._refresh(device) for device in sorted(touched)]
        return out or [Decoded("", result="ignored")]

    def _check_limits(self, old: list[Entity], new: list[tuple[Entity, DeviceSpec]]) -> None:
        """Refuse a config that would add a device past ``max_devices`` or an entity past
        :data:`MAX_ENTITIES`, before anything changes."""
        fresh = {s.id for _, s in new if s.id not in self.base_specs and s.id not in self._configured_id_at}
        if fresh and len(self.base_specs) + len(fresh) > self.max_devices:
            raise PayloadError(f"device limit reached ({self.max_devices} devices; max_devices): "
                               f"{sample(min(fresh))} not added", "unknown_device",
                               log_key=f"{self.name}:{self.prefix}:max_devices")
        growth = Counter(e.device for e, _ in new)
        growth.subtract(e.device for e in old)
        for device, more in growth.items():
            roles = self._roles.get(device)
            if more > 0 and (roles.total() if roles else 0) + more > MAX_ENTITIES:
                raise PayloadError(f"device {device} would have more than {MAX_ENTITIES} entities",
                                   device=device)

    def _entity(self, key: str, component: str, config: dict[str, Any]) -> list[tuple[Entity, DeviceSpec]]:
        role = role_of(component, config)
        spec = None if role is None else self._device(key, config)
        if role is None or spec is None:
            return []
        return [(make_entity(key, component, role, spec.id, config), spec)]

    def _configured(self, ident: str, names: Iterable[str]) -> DeviceSpec | None:
        """The first configured device whose topic is one of ``names`` or whose id is ``ident``'s."""
        found = [self._configured_at[n] for n in names if n in self._configured_at]
        if (i := self._configured_id_at.get(sanitize(ident))) is not None:
            found.append(i)
        return self.configured[min(found)] if found else None

    def _device(self, key: str, config: Mapping[str, Any]) -> DeviceSpec | None:
        info = config.get("device")
        info = expand(info) if isinstance(info, dict) else {}
        ids = info.get("identifiers")
        idents = [i for i in (ids if isinstance(ids, list) else [ids]) if isinstance(i, str) and i]
        unique = config.get("unique_id")
        fallback = unique if isinstance(unique, str) and unique else key.split("/", 1)[1]
        ident = idents[0] if idents else fallback
        base = self._configured(ident, {ident, *idents, *key.split("/")[1:-1]})
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
        roles = self._roles.get(device)
        base = self.base_specs.get(device)
        if not roles or base is None:
            self.specs.pop(device, None)
            self.base_specs.pop(device, None)
            self._roles.pop(device, None)
            return Decoded(device, removed=True, result="discovery")
        lock = not LOCK_ROLES.isdisjoint(roles) or base.kind == "smart_lock"
        spec = replace(base, kind="smart_lock" if lock else "door_contact")
        changed = self.specs.get(device) != spec
        self.specs[device] = spec
        return Decoded(device, spec=spec if changed else None, result="discovery")


def _drop(index: dict[str, dict[str, Any]], topic: str, key: str) -> None:
    entries = index.get(topic)
    if entries is not None:
        entries.pop(key, None)
        if not entries:
            del index[topic]
