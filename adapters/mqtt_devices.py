"""Door contacts and smart locks on MQTT → ``source_event`` and ``device`` bus messages.

:class:`DeviceHub` subscribes to every configured device topic and its Zigbee2MQTT availability topic
(``<topic>/availability``), decodes payloads with the device's dialect (:mod:`adapters.dialects`) and
keeps per-device state, so it reports *changes* and the things only state can tell:

- ``door_forced``: an explicit forced/break-in alarm from a lock or access system, or a door contact
  opening while its linked lock (``DeviceConfig.lock``; a lock with its own door sensor links itself)
  last reported locked with no successful unlock in the previous ``forced_window_s`` (10 s). A forced
  opening is reported as ``door_forced`` *instead of* ``door_opened``.
- ``lock_failed_attempts``: ``failed_attempts`` (3) failed unlocks within ``failed_window_s`` (60 s), or
  the lock's own wrong-code-limit alarm.
- ``door_held_open`` after ``held_open_s`` (``alerts.held_open_s``), ``tamper`` on its rising edge,
  ``low_battery`` once below 20 % (re-armed above 30 %), ``device_offline`` from availability or from
  ``offline_after_s`` of silence and ``device_online`` when it comes back.

Bad payloads (not JSON, wrong types, larger than 64 KiB, unknown topic) are counted in
``metrics.mqtt_messages{result=...}`` and :attr:`DeviceHub.counts`, logged once per device with a short
sample, and never stop the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from adapters.dialects import (
    PayloadError,
    Reading,
    decode_availability,
    decoder_for,
    parse_json_object,
)
from adapters.mqtt_client import MqttClient
from hub.bus import TOPIC_DEVICE, TOPIC_SOURCE_EVENT, Bus
from hub.config import DeviceConfig
from hub.events import EventKind, SourceEvent
from hub.metrics import Metrics

log = logging.getLogger(__name__)

AVAILABILITY_SUFFIX = "/availability"
LOW_BATTERY = 20.0
BATTERY_REARM = 30.0
NEG_INF = float("-inf")


@dataclass(slots=True)
class DeviceState:
    cfg: DeviceConfig
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

    def status(self) -> dict[str, Any]:
        """The ``device`` bus message and ``GET /api/devices`` row."""
        c = self.cfg
        return {
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
        }


class DeviceHub:
    """Decode MQTT door/lock devices into ``source_event`` (SourceEvent) and ``device`` (status dict)."""

    def __init__(
        self,
        devices: list[DeviceConfig],
        bus: Bus,
        client: MqttClient,
        metrics: Metrics | None = None,
        *,
        held_open_s: float = 120.0,
        forced_window_s: float = 10.0,
        failed_attempts: int = 3,
        failed_window_s: float = 60.0,
        tick_s: float = 1.0,
    ) -> None:
        self.bus = bus
        self.client = client
        self.metrics = metrics
        self.held_open_s = held_open_s
        self.forced_window_s = forced_window_s
        self.failed_attempts = failed_attempts
        self.failed_window_s = failed_window_s
        self.tick_s = tick_s
        self.counts: Counter[str] = Counter()
        self.devices: dict[str, DeviceState] = {d.id: DeviceState(d) for d in devices}
        self._by_topic: dict[str, DeviceState] = {}
        self._by_availability: dict[str, DeviceState] = {}
        for st in self.devices.values():
            if st.cfg.topic in self._by_topic:
                log.warning("devices %s and %s share topic %s; using %s",
                            self._by_topic[st.cfg.topic].cfg.id, st.cfg.id, st.cfg.topic, st.cfg.id)
            self._by_topic[st.cfg.topic] = st
            self._by_availability[st.cfg.topic + AVAILABILITY_SUFFIX] = st
        self._unknown_logged: set[str] = set()
        self._started = time.time()
        self.ready = asyncio.Event()  # set once run() has subscribed every device topic

    # ------------------------------------------------------------------ runtime
    async def run(self) -> None:
        """Subscribe, then decode messages and check timers forever."""
        for topic in self._by_topic:
            await self.client.subscribe(topic, qos=1)
            await self.client.subscribe(topic + AVAILABILITY_SUFFIX, qos=1)
        self._started = time.time()
        self.ready.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume(), name="mqtt-devices-consume")
            tg.create_task(self._ticker(), name="mqtt-devices-timers")

    async def _consume(self) -> None:
        async for msg in self.client.messages():
            self.handle(msg.topic, msg.payload)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.tick()

    def status(self) -> list[dict[str, Any]]:
        return [st.status() for st in self.devices.values()]

    # ------------------------------------------------------------------ decoding
    def handle(self, topic: str, payload: bytes, now: float | None = None) -> list[SourceEvent]:
        """Decode one message; publish and return the events it caused. Never raises."""
        now = time.time() if now is None else now
        st = self._by_topic.get(topic)
        is_availability = False
        if st is None:
            st = self._by_availability.get(topic)
            is_availability = st is not None
        if st is None:
            self._count("unknown_topic")
            if topic not in self._unknown_logged and len(self._unknown_logged) < 100:
                self._unknown_logged.add(topic)
                log.warning("MQTT message on unconfigured topic %r ignored (counted)", topic[:200])
            return []
        try:
            if is_availability:
                reading = Reading(available=decode_availability(payload))
                result = "availability"
            else:
                obj = parse_json_object(payload)
                reading = decoder_for(st.cfg.dialect)(obj, st.cfg.kind)
                result = "ok"
        except PayloadError as exc:
            self._bad(st, exc.result, str(exc), payload)
            return []
        except Exception as exc:  # a decoder bug must not stop the stream
            self._bad(st, "error", f"{type(exc).__name__}: {exc}", payload)
            return []
        self._count(result)
        events = self._apply(st, reading, now)
        self._publish(st, events)
        return events

    def tick(self, now: float | None = None) -> list[SourceEvent]:
        """Timers: doors held open, devices silent too long."""
        now = time.time() if now is None else now
        out: list[SourceEvent] = []
        for st in self.devices.values():
            events: list[SourceEvent] = []
            if st.door_open and st.opened_at is not None and not st.held_sent \
                    and now - st.opened_at >= self.held_open_s:
                st.held_sent = True
                events.append(self._event(st, EventKind.DOOR_HELD_OPEN, now,
                                          {"open_s": round(now - st.opened_at, 1)}))
            silence = st.cfg.offline_after_s
            if silence > 0 and st.online is not False:
                last = st.last_seen if st.last_seen is not None else self._started
                if now - last > silence:
                    st.online = False
                    events.append(self._event(st, EventKind.DEVICE_OFFLINE, now,
                                              {"reason": "silence", "silent_s": round(now - last, 1)}))
            self._publish(st, events)
            out.extend(events)
        return out

    # ------------------------------------------------------------------ state machine
    def _apply(self, st: DeviceState, r: Reading, now: float) -> list[SourceEvent]:
        ev: list[SourceEvent] = []
        at = now
        if r.device_ts is not None and -60 < now - r.device_ts < 86_400:
            at = r.device_ts
        extra: dict[str, Any] = {"action": r.action} if r.action else {}

        # availability: an explicit offline, otherwise any message means the device is alive
        if r.available is False:
            if st.online is not False:
                st.online = False
                ev.append(self._event(st, EventKind.DEVICE_OFFLINE, at, {"reason": "availability"}))
            return ev
        st.last_seen = now
        if st.online is False:
            ev.append(self._event(st, EventKind.DEVICE_ONLINE, at, {}))
        st.online = True

        if r.battery is not None:
            st.battery = r.battery
            if r.battery < LOW_BATTERY and not st.low_battery_sent:
                st.low_battery_sent = True
                ev.append(self._event(st, EventKind.LOW_BATTERY, at, {"battery": r.battery}))
            elif r.battery >= BATTERY_REARM:
                st.low_battery_sent = False
        if r.tamper is not None:
            if r.tamper and not st.tamper:
                ev.append(self._event(st, EventKind.TAMPER, at, extra))
            st.tamper = r.tamper

        # lock: a successful unlock (with its method) and lock-state transitions
        recently_unlocked = now - st.last_unlock_at <= self.forced_window_s
        if r.unlocked_by is not None:
            st.last_unlock_at, st.last_unlock_method = now, r.unlocked_by
            ev.append(self._event(st, EventKind.LOCK_UNLOCKED, at, {"method": r.unlocked_by, **extra}))
        if r.locked is not None and r.locked != st.locked:
            previous, st.locked = st.locked, r.locked
            if r.locked and previous is not None:
                ev.append(self._event(st, EventKind.LOCK_LOCKED, at, extra))
            elif not r.locked and previous and r.unlocked_by is None and not recently_unlocked:
                st.last_unlock_at, st.last_unlock_method = now, "unknown"
                ev.append(self._event(st, EventKind.LOCK_UNLOCKED, at, {"method": "unknown", **extra}))

        if r.failed_attempt:
            st.failed.append(now)
            while st.failed and now - st.failed[0] > self.failed_window_s:
                st.failed.popleft()
            if r.failed_limit or len(st.failed) >= self.failed_attempts:
                ev.append(self._event(st, EventKind.LOCK_FAILED_ATTEMPTS, at, {
                    "count": len(st.failed), "window_s": self.failed_window_s,
                    "reason": "device_limit" if r.failed_limit else "repeated_failures", **extra}))
                st.failed.clear()

        if r.forced:
            st.last_forced_at = now
            ev.append(self._event(st, EventKind.DOOR_FORCED, at, {"reason": "device_alarm", **extra}))

        if r.door_open is not None and r.door_open != st.door_open:
            previous, st.door_open = st.door_open, r.door_open
            if r.door_open:  # an unknown → open report counts as an opening (contacts report changes)
                st.opened_at, st.held_sent = now, False
                ev.append(self._door_opened(st, at, now, extra))
            elif previous is not None:  # unknown → closed is just the first report
                open_s = None if st.opened_at is None else round(now - st.opened_at, 1)
                st.opened_at = None
                ev.append(self._event(st, EventKind.DOOR_CLOSED, at, {"open_s": open_s, **extra}))
        if r.held_open and not st.held_sent:
            st.held_sent = True
            ev.append(self._event(st, EventKind.DOOR_HELD_OPEN, at, {"reason": "device", **extra}))
        return ev

    def _door_opened(self, st: DeviceState, at: float, now: float, extra: dict[str, Any]) -> SourceEvent:
        lock = self._lock_of(st)
        if lock is None:
            return self._event(st, EventKind.DOOR_OPENED, at, extra)
        data: dict[str, Any] = {"lock": lock.cfg.id, "lock_state": _lock_word(lock.locked), **extra}
        unlocked_recently = now - lock.last_unlock_at <= self.forced_window_s
        if unlocked_recently:
            data["unlocked_by"] = lock.last_unlock_method
        alarm_recently = now - max(lock.last_forced_at, st.last_forced_at) <= self.forced_window_s
        if lock.locked is True and not unlocked_recently:
            if alarm_recently:  # the lock already reported this break-in itself
                return self._event(st, EventKind.DOOR_OPENED, at, {**data, "forced_reported": True})
            st.last_forced_at = now
            return self._event(st, EventKind.DOOR_FORCED, at, {**data, "reason": "opened_while_locked"})
        return self._event(st, EventKind.DOOR_OPENED, at, data)

    def _lock_of(self, st: DeviceState) -> DeviceState | None:
        if st.cfg.lock is not None:
            return self.devices.get(st.cfg.lock)
        # a lock with its own door sensor, or an access system that reports unlocks for its door
        own = st.cfg.kind == "smart_lock" or st.locked is not None or st.last_unlock_at > NEG_INF
        return st if own else None

    # ------------------------------------------------------------------ output
    def _event(self, st: DeviceState, kind: EventKind, at: float, data: dict[str, Any]) -> SourceEvent:
        c = st.cfg
        body: dict[str, Any] = {"name": c.name or c.id, "device_kind": c.kind, **data}
        if c.cameras:
            body["cameras"] = list(c.cameras)
        st.last_event, st.last_event_at = str(kind), at
        return SourceEvent(source_id=c.id, kind=kind, at=at, grid=c.grid or None, data=body)

    def _publish(self, st: DeviceState, events: list[SourceEvent]) -> None:
        for event in events:
            self.bus.publish(TOPIC_SOURCE_EVENT, event)
        status = st.status()
        compare = {k: v for k, v in status.items() if k != "last_seen"}
        if compare != st.published_status:
            st.published_status = compare
            self.bus.publish(TOPIC_DEVICE, status)

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        if self.metrics is not None:
            self.metrics.mqtt_messages.labels(result=result).inc()

    def _bad(self, st: DeviceState, result: str, reason: str, payload: bytes) -> None:
        self._count(result)
        if not st.bad_logged:
            st.bad_logged = True
            log.warning("device %s (%s, %s): ignored a bad payload: %s; sample %r "
                        "(further bad payloads from this device are only counted)",
                        st.cfg.id, st.cfg.topic, st.cfg.dialect, reason[:200], payload[:64])


def _lock_word(locked: bool | None) -> str:
    return "unknown" if locked is None else ("locked" if locked else "unlocked")
