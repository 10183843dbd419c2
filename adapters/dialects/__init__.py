"""Pure payload decoders: one module per dialect; no I/O anywhere in this package.

Two layers:

- field decoders (``zigbee2mqtt.decode``, ``json_events.decode``) turn one JSON object into a
  :class:`Reading`: what one message says about a door or lock (door open?, locked?, a successful
  unlock and how, a failed attempt, a forced-door alarm, tamper, battery, availability);
- :class:`Dialect` objects route a whole MQTT message (topic + payload bytes) to the device it is
  about and decode it into :class:`Decoded` items: readings, and for discovery-based dialects (Home
  Assistant, auto-created mapping devices) device definitions and removals. A dialect keeps only its
  routing table; :class:`adapters.mqtt_devices.DeviceHub` keeps per-device state and turns changes
  into :class:`hub.events.SourceEvent` s.

Decoders and dialects raise :class:`PayloadError` for anything malformed and nothing else.
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_PAYLOAD_BYTES = 64 * 1024

DeviceKind = Literal["door_contact", "smart_lock"]
DEVICE_KINDS: tuple[DeviceKind, ...] = ("door_contact", "smart_lock")
AVAILABILITY_SUFFIX = "/availability"


class PayloadError(ValueError):
    """A device payload is malformed. ``result`` is the metrics label (bad_json, bad_payload, too_large,
    unknown_device); ``device`` the device it was about, when the dialect could tell; ``log_key``, when
    given, groups errors that are logged only once (e.g. every config refused by a device limit)."""

    def __init__(self, message: str, result: str = "bad_payload", device: str | None = None, *,
                 log_key: str | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.device = device
        self.log_key = log_key


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
    battery_low: bool | None = None  # a low-battery flag (devices that report no percentage)
    method: str | None = None  # how the lock was opened, if this message's lock state says "unlocked"
    action: str | None = None
    device_ts: float | None = None

    @property
    def empty(self) -> bool:
        return self == Reading()


def sample(value: object, limit: int = 40) -> str:
    """A short, always-printable ``repr`` for error messages (never raises, even for huge ints)."""
    try:
        text = repr(value)
    except Exception:  # int too large to print, broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_size(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", "too_large")


def payload_text(payload: bytes) -> str:
    """A size-checked UTF-8 payload, stripped."""
    check_size(payload)
    try:
        return payload.decode().strip()
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8 text", "bad_payload") from None


def parse_json(payload: bytes) -> Any:
    """Size-check and parse ``payload`` as any JSON value."""
    check_size(payload)
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"not JSON: {sample(str(exc), 80)}", "bad_json") from None


def parse_json_object(payload: bytes) -> Mapping[str, Any]:
    """Size-check and parse ``payload`` as a JSON object."""
    obj = parse_json(payload)
    if not isinstance(obj, dict):
        raise PayloadError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def decode_availability(payload: bytes) -> bool:
    """Zigbee2MQTT availability: ``online``/``offline`` (legacy) or ``{"state": "online"}``."""
    text = payload_text(payload)
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
        raise PayloadError(f"{key!r} must be a number 0..100, got {sample(value)}")
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


def text_of(value: object) -> str:
    """A JSON value as text the way value maps and templates compare it: ``true`` → ``"true"``,
    ``1.0`` → ``"1"``, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    if value is None:
        return "null"
    raise PayloadError(f"expected a scalar value, got {type(value).__name__}")


# ---------------------------------------------------------------- paths and topic patterns
MISSING: Any = object()
_PATH_TOKEN = re.compile(r"\[(\d+)\]|\[['\"]([^'\"]*)['\"]\]|([^.\[\]]+)")


def parse_path(path: str) -> tuple[str | int, ...]:
    """``"data.events[0].type"`` or ``"data.events.0.type"`` → ``("data", "events", 0, "type")``."""
    parts: list[str | int] = []
    pos = 0
    for m in _PATH_TOKEN.finditer(path):
        between = path[pos:m.start()]
        if between not in ("", "."):
            raise ValueError(f"bad field path {path!r}")
        pos = m.end()
        index, quoted, name = m.groups()
        if index is not None:
            parts.append(int(index))
        elif quoted is not None:
            parts.append(quoted)
        else:
            parts.append(int(name) if name.isdigit() else name)
    if not parts or path[pos:] not in ("",):
        raise ValueError(f"bad field path {path!r}")
    return tuple(parts)


def get_path(obj: Any, path: Sequence[str | int]) -> Any:
    """The value at ``path`` inside parsed JSON, or :data:`MISSING`."""
    for part in path:
        if isinstance(part, int) and isinstance(obj, list):
            if not -len(obj) <= part < len(obj):
                return MISSING
            obj = obj[part]
        elif isinstance(obj, dict):
            key = str(part)
            if key not in obj:
                return MISSING
            obj = obj[key]
        else:
            return MISSING
    return obj


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest)."""
    fparts, tparts = topic_filter.split("/"), topic.split("/")
    for i, f in enumerate(fparts):
        if f == "#":
            return True
        if i >= len(tparts) or (f != "+" and f != tparts[i]):
            return False
    return len(fparts) == len(tparts)


# ---------------------------------------------------------------- devices and dialects
@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What the hub knows about one device, whichever config or discovery message defined it."""

    id: str
    kind: DeviceKind
    topic: str = ""
    dialect: str = "zigbee2mqtt"
    name: str = ""
    grid: str = ""
    cameras: tuple[str, ...] = ()
    offline_after_s: float = 0.0
    lock: str | None = None  # the smart lock that secures this door (forced-door detection)
    source: str | None = None  # the adapter that reports it
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. manufacturer, model from discovery

    @classmethod
    def of(cls, cfg: Any) -> DeviceSpec:
        """From :class:`hub.config.DeviceConfig` (or any object with the same attributes)."""
        if isinstance(cfg, DeviceSpec):
            return cfg
        return cls(id=cfg.id, kind=cfg.kind, topic=cfg.topic, dialect=cfg.dialect, name=cfg.name,
                   grid=cfg.grid, cameras=tuple(cfg.cameras), offline_after_s=float(cfg.offline_after_s),
                   lock=cfg.lock, source=getattr(cfg, "source", None))


@dataclass(frozen=True, slots=True)
class Decoded:
    """One thing a message said: a reading for a device, or a device defined/removed by discovery."""

    device: str
    reading: Reading | None = None
    spec: DeviceSpec | None = None  # define (or redefine) the device before applying the reading
    removed: bool = False
    result: str = "ok"  # the metrics label the message is counted under


class Dialect(abc.ABC):
    """Routes MQTT messages to devices and decodes them. Pure: a routing table, no I/O."""

    name: str = "?"  # for log lines

    @abc.abstractmethod
    def filters(self) -> list[str]:
        """Topic filters to subscribe to (may grow after discovery messages)."""

    @abc.abstractmethod
    def decode(self, topic: str, payload: bytes) -> list[Decoded] | None:
        """``None``: not a topic of this dialect. Raises :class:`PayloadError` only."""


ObjectDecoder = Callable[[Mapping[str, Any], DeviceKind], Reading]


class TopicDialect(Dialect):
    """One topic per device carrying a JSON object, plus ``<topic>/availability`` (Zigbee2MQTT style)."""

    def __init__(self, devices: Iterable[DeviceSpec], decoder: ObjectDecoder, name: str) -> None:
        self.name = name
        self.decoder = decoder
        self.by_topic: dict[str, DeviceSpec] = {}
        for spec in devices:
            self.by_topic[spec.topic] = spec  # the caller warns about shared topics

    def filters(self) -> list[str]:
        return [f for t in self.by_topic for f in (t, t + AVAILABILITY_SUFFIX)]

    def decode(self, topic: str, payload: bytes) -> list[Decoded] | None:
        spec = self.by_topic.get(topic)
        if spec is not None:
            try:
                reading = self.decoder(parse_json_object(payload), spec.kind)
            except PayloadError as exc:
                exc.device = spec.id
                raise
            return [Decoded(spec.id, reading)]
        if topic.endswith(AVAILABILITY_SUFFIX):
            spec = self.by_topic.get(topic.removesuffix(AVAILABILITY_SUFFIX))
            if spec is not None:
                try:
                    available = decode_availability(payload)
                except PayloadError as exc:
                    exc.device = spec.id
                    raise
                return [Decoded(spec.id, Reading(available=available), result="availability")]
        return None


Decoder = ObjectDecoder


def decoder_for(dialect: str) -> Decoder:
    from adapters.dialects import json_events, zigbee2mqtt

    decoders: dict[str, Decoder] = {"zigbee2mqtt": zigbee2mqtt.decode, "json": json_events.decode}
    return decoders[dialect]


def dialects_for(devices: Iterable[DeviceSpec]) -> list[Dialect]:
    """Dialects for configured devices by their ``dialect`` name: zigbee2mqtt, json, tasmota."""
    from adapters.dialects import json_events, zigbee2mqtt
    from adapters.dialects.tasmota import Tasmota

    groups: dict[str, list[DeviceSpec]] = {}
    for spec in devices:
        groups.setdefault(spec.dialect, []).append(spec)
    out: list[Dialect] = []
    for name, specs in groups.items():
        if name == "zigbee2mqtt":
            out.append(TopicDialect(specs, zigbee2mqtt.decode, name))
        elif name == "json":
            out.append(TopicDialect(specs, json_events.decode, name))
        elif name == "tasmota":
            out.append(Tasmota(specs))
        else:
            raise ValueError(f"dialect {name!r} needs its own options; use an mqtt source (kind: mqtt)")
    return out
