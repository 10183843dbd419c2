"""One door contact's or smart lock's state, and the events its changes mean.

:class:`DeviceState` is what the hub knows about a device (door, lock, battery, tamper, availability,
recent unlocks and failed attempts); :class:`DoorLockRules` turns a :class:`adapters.dialects.Reading`
into the events only state can tell (see :mod:`adapters.mqtt_devices` for the list): forced doors
(a door opening while its lock reports locked with no recent unlock), repeated failed attempts, held-open
doors, low battery with re-arming, tamper edges, and offline/online from availability or silence.
Pure: no I/O; :class:`adapters.mqtt_devices.DeviceHub` publishes what comes out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.dialects import DeviceSpec, Reading
from hub.events import EventKind, SourceEvent

LOW_BATTERY = 20.0
BATTERY_REARM = 30.0
NEG_INF = float("-inf")


@dataclass(slots=True)
class DeviceState:
    """What the hub knows about one device."""

    cfg: DeviceSpec
    online: bool | None = None
    last_seen: float | None = None
    last_event: str | None = None
    last_event_at: float | None = None
    battery: float | None = None
    low_battery_sent: bool = False
    tamper: bool = False
    door_open: bool | None = None
    opened_at: float | None = None
    held_sent: bool = False
    locked: bool | None = None
    last_unlock_at: float = NEG_INF
    last_unlock_method: str | None = None
    last_forced_at: float = NEG_INF
    failed: deque[float] = field(default_factory=deque)
    bad_logged: bool = False
    published_status: dict[str, Any] | None = None
    published_key: tuple[Any, ...] | None = None

    def status(self) -> dict[str, Any]:
        """The ``device`` bus message and ``GET /api/devices`` row."""
        c = self.cfg
        row: dict[str, Any] = {
            "id": c.id,
            "name": c.name or c.id,
            "grid": c.grid,
            "kind": c.kind,
            "status": "online" if self.online else "offline",
            "door": None if self.door_open is None else ("open" if self.door_open else "closed"),
            "locked": self.locked,
            "battery": self.battery,
            "tamper": self.tamper,
            "last_event": self.last_event,
            "last_event_at": self.last_event_at,
            "last_seen": self.last_seen,
            "lock": c.lock,
            "cameras": list(c.cameras),
            "dialect": c.dialect,
        }
        if c.source is not None:
            row["source"] = c.source
        return row


@dataclass(slots=True)
class DoorLockRules:
    """The state machine of every device in ``devices`` (a lock is looked up there by a door's
    ``lock`` link). Times are epoch seconds."""

    devices: Mapping[str, DeviceState]
    held_open_s: float = 120.0
    forced_window_s: float = 10.0
    failed_attempts: int = 3
    failed_window_s: float = 60.0

    def apply(self, st: DeviceState, r: Reading, now: float) -> list[SourceEvent]:
        """Update ``st`` with what one message reported; the events that change means."""
        ev: list[SourceEvent] = []
        at = now
        if r.device_ts is not None and -60 < now - r.device_ts < 86_400:
            at = r.device_ts
        extra: dict[str, Any] = {"action": r.action} if r.action else {}

        # availability: an explicit offline, otherwise any message means the device is alive
        if r.available is False:
            if st.online is not False:
                st.online = False
                ev.append(event(st, EventKind.DEVICE_OFFLINE, at, {"reason": "availability"}))
            return ev
        st.last_seen = now
        if st.online is False:
            ev.append(event(st, EventKind.DEVICE_ONLINE, at, {}))
        st.online = True

        if r.battery is not None:
            st.battery = r.battery
            if r.battery < LOW_BATTERY and not st.low_battery_sent:
                st.low_battery_sent = True
                ev.append(event(st, EventKind.LOW_BATTERY, at, {"battery": r.battery}))
            elif r.battery >= BATTERY_REARM:
                st.low_battery_sent = False
        if r.battery_low is not None:
            if r.battery_low and not st.low_battery_sent:
                st.low_battery_sent = True
                ev.append(event(st, EventKind.LOW_BATTERY, at, {"battery": st.battery, "reason": "flag"}))
            elif not r.battery_low and (st.battery is None or st.battery >= BATTERY_REARM):
                st.low_battery_sent = False
        if r.tamper is not None:
            if r.tamper and not st.tamper:
                ev.append(event(st, EventKind.TAMPER, at, extra))
            st.tamper = r.tamper

        # lock: a successful unlock (with its method) and lock-state transitions
        recently_unlocked = now - st.last_unlock_at <= self.forced_window_s
        if r.unlocked_by is not None:
            st.last_unlock_at, st.last_unlock_method = now, r.unlocked_by
            ev.append(event(st, EventKind.LOCK_UNLOCKED, at, {"method": r.unlocked_by, **extra}))
        if r.locked is not None and r.locked != st.locked:
            previous, st.locked = st.locked, r.locked
            if r.locked and previous is not None:
                ev.append(event(st, EventKind.LOCK_LOCKED, at, extra))
            elif not r.locked and previous and r.unlocked_by is None and not recently_unlocked:
                method = r.method or "unknown"
                st.last_unlock_at, st.last_unlock_method = now, method
                ev.append(event(st, EventKind.LOCK_UNLOCKED, at, {"method": method, **extra}))

        if r.failed_attempt:
            st.failed.append(now)
            while st.failed and now - st.failed[0] > self.failed_window_s:
                st.failed.popleft()
            if r.failed_limit or len(st.failed) >= self.failed_attempts:
                ev.append(event(st, EventKind.LOCK_FAILED_ATTEMPTS, at, {
                    "count": len(st.failed), "window_s": self.failed_window_s,
                    "reason": "device_limit" if r.failed_limit else "repeated_failures", **extra}))
                st.failed.clear()

        if r.forced:
            st.last_forced_at = now
            ev.append(event(st, EventKind.DOOR_FORCED, at, {"reason": "device_alarm", **extra}))

        if r.door_open is not None and r.door_open != st.door_open:
            previous, st.door_open = st.door_open, r.door_open
            if r.door_open:  # an unknown → open report counts as an opening (contacts report changes)
                st.opened_at, st.held_sent = now, False
                ev.append(self._door_opened(st, at, now, extra))
            elif previous is not None:  # unknown → closed is just the first report
                open_s = None if st.opened_at is None else round(now - st.opened_at, 1)
                st.opened_at = None
                ev.append(event(st, EventKind.DOOR_CLOSED, at, {"open_s": open_s, **extra}))
        if r.held_open and not st.held_sent:
            st.held_sent = True
            ev.append(event(st, EventKind.DOOR_HELD_OPEN, at, {"reason": "device", **extra}))
        return ev

    def _door_opened(self, st: DeviceState, at: float, now: float, extra: dict[str, Any]) -> SourceEvent:
        lock = self._lock_of(st)
        if lock is None:
            return event(st, EventKind.DOOR_OPENED, at, extra)
        data: dict[str, Any] = {"lock": lock.cfg.id, "lock_state": lock_word(lock.locked), **extra}
        unlocked_recently = now - lock.last_unlock_at <= self.forced_window_s
        if unlocked_recently:
            data["unlocked_by"] = lock.last_unlock_method
        alarm_recently = now - max(lock.last_forced_at, st.last_forced_at) <= self.forced_window_s
        if lock.locked is True and not unlocked_recently:
            if alarm_recently:  # the lock already reported this break-in itself
                return event(st, EventKind.DOOR_OPENED, at, {**data, "forced_reported": True})
            st.last_forced_at = now
            return event(st, EventKind.DOOR_FORCED, at, {**data, "reason": "opened_while_locked"})
        return event(st, EventKind.DOOR_OPENED, at, data)

    def _lock_of(self, st: DeviceState) -> DeviceState | None:
        if st.cfg.lock is not None:
            return self.devices.get(st.cfg.lock)
        # a lock with its own door sensor, or an access system that reports unlocks for its door
        own = st.cfg.kind == "smart_lock" or st.locked is not None or st.last_unlock_at > NEG_INF
        return st if own else None

    def timers(self, st: DeviceState, now: float, started: float) -> list[SourceEvent]:
        """A door held open past ``held_open_s``; a device silent past its ``offline_after_s``
        (counted from ``started`` if it never spoke)."""
        events: list[SourceEvent] = []
        if st.door_open and st.opened_at is not None and not st.held_sent \
                and now - st.opened_at >= self.held_open_s:
            st.held_sent = True
            events.append(event(st, EventKind.DOOR_HELD_OPEN, now, {"open_s": round(now - st.opened_at, 1)}))
        silence = st.cfg.offline_after_s
        if silence > 0 and st.online is not False:
            last = st.last_seen if st.last_seen is not None else started
            if now - last > silence:
                st.online = False
                events.append(event(st, EventKind.DEVICE_OFFLINE, now,
                                    {"reason": "silence", "silent_s": round(now - last, 1)}))
        return events


def event(st: DeviceState, kind: EventKind, at: float, data: dict[str, Any]) -> SourceEvent:
    """A :class:`SourceEvent` about ``st``'s device (remembered as its last event)."""
    c = st.cfg
    body: dict[str, Any] = {"name": c.name or c.id, "device_kind": c.kind, **data}
    if c.cameras:
        body["cameras"] = list(c.cameras)
    if c.source is not None:
        body["source"] = c.source
    st.last_event, st.last_event_at = str(kind), at
    return SourceEvent(source_id=c.id, kind=kind, at=at, grid=c.grid or None, data=body)


def lock_word(locked: bool | None) -> str:
    return "unknown" if locked is None else ("locked" if locked else "unlocked")
