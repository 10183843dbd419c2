"""Typed events that flow over the internal bus.

Adapters emit :class:`SourceEvent` (a door opened, a lock was forced, a camera went
offline); detectors emit :class:`RuleHit`; alerts emit incidents. Everything on the
bus is an immutable value with a stable ``id`` so it can be stored idempotently.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


def new_id() -> str:
    """A sortable unique id (time-ordered UUIDv7-like hex)."""
    ms = int(time.time() * 1000)
    rand = uuid.uuid4().hex[12:]
    return f"{ms:012x}{rand}"


class EventKind(StrEnum):
    DOOR_OPENED = "door_opened"
    DOOR_CLOSED = "door_closed"
    DOOR_HELD_OPEN = "door_held_open"
    DOOR_FORCED = "door_forced"
    INTRUSION_ALARM = "intrusion_alarm"  # an alarm panel zone, PIR or fence sensor went off
    LOCK_UNLOCKED = "lock_unlocked"
    LOCK_LOCKED = "lock_locked"
    LOCK_FAILED_ATTEMPTS = "lock_failed_attempts"
    TAMPER = "tamper"
    LOW_BATTERY = "low_battery"
    DEVICE_ONLINE = "device_online"
    DEVICE_OFFLINE = "device_offline"
    CAMERA_ONLINE = "camera_online"
    CAMERA_OFFLINE = "camera_offline"
    MOTION = "motion"  # a camera's own motion detector
    LINE_CROSSING = "line_crossing"  # a camera's own line-crossing (tripwire) rule
    FIELD_DETECTION = "field_detection"  # a camera's own intrusion / region-entrance rule
    VIDEO_LOSS = "video_loss"  # a camera reports its video input lost


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """Something a device or system reported."""

    source_id: str
    kind: EventKind
    at: float = field(default_factory=time.time)
    grid: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source_id": self.source_id,
            "kind": str(self.kind),
            "at": self.at,
            "grid": self.grid,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A detector rule fired on a camera (e.g. a person dwelt in a zone)."""

    camera_id: str
    rule: str
    zone: str | None
    track_id: int
    label: str
    confidence: float
    box: tuple[float, float, float, float]
    captured_at: float
    frame_seq: int
    at: float = field(default_factory=time.time)
    id: str = field(default_factory=new_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "camera_id": self.camera_id,
            "rule": self.rule,
            "zone": self.zone,
            "track_id": self.track_id,
            "label": self.label,
            "confidence": round(self.confidence, 3),
            "box": [round(v, 1) for v in self.box],
            "captured_at": self.captured_at,
            "at": self.at,
        }
