"""Door contacts and smart locks on MQTT → typed :class:`SourceEvent` s and device status rows.

:class:`DeviceHub` subscribes to its dialects' topic filters (:mod:`adapters.dialects`: Zigbee2MQTT,
JSON, Tasmota, Home Assistant discovery, declarative mappings), lets them route and decode each message,
and keeps per-device state, so it reports *changes* and the things only state can tell:

- ``door_forced``: an explicit forced/break-in alarm from a lock or access system, or a door contact
  opening while its linked lock (``DeviceConfig.lock``; a lock with its own door sensor links itself)
  last reported locked with no successful unlock in the previous ``forced_window_s`` (10 s). A forced
  opening is reported as ``door_forced`` *instead of* ``door_opened``.
- ``lock_failed_attempts``: ``failed_attempts`` (3) failed unlocks within ``failed_window_s`` (60 s), or
  the lock's own wrong-code-limit alarm.
- ``door_held_open`` after ``held_open_s`` (``alerts.held_open_s``), ``tamper`` on its rising edge,
  ``low_battery`` once below 20 % (re-armed above 30 %), ``device_offline`` from availability or from
  ``offline_after_s`` of silence and ``device_online`` when it comes back.

Bad payloads (not JSON, wrong types, larger than 64 KiB, unknown topic or device) are counted in
``metrics.mqtt_messages{result=...}`` and :attr:`DeviceHub.counts`, logged once per device with a short
sample, and never stop the stream. Outputs go to the hub's bus and/or to callbacks (the ``mqtt`` source
adapter queues them for its ``events()``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.dialects import (
    Decoded,
    DeviceSpec,
    Dialect,
    PayloadError,
    Reading,
    dialects_for,
)
from hub.events import EventKind, SourceEvent

if TYPE_CHECKING:
    from adapters.mqtt_client import MqttClient
    from hub.bus import Bus
    from hub.config import DeviceConfig
    from hub.metrics import Metrics

log = logging.getLogger(__name__)

EventCallback = Callable[[SourceEvent], None]
StatusCallback = Callable[[dict[str, Any]], None]
LOW_BATTERY = 20.0
BATTERY_REARM = 30.0
NEG_INF = float("-inf")


@dataclass(slots=True)
class DeviceState:
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


class DeviceHub:
    """Decode MQTT door/lock devices into events (SourceEvent) and status rows (dicts).

    Outputs go to the bus (``source_event`` and ``device`` topics) when ``bus`` is given, and to the
    ``on_event`` / ``on_status`` callbacks when given (the ``mqtt`` source adapter uses those).
    ``dialects`` default to the configured devices' dialect names (zigbee2mqtt, json, tasmota).
    """

    def __init__(
        self,
        devices: Sequence[DeviceConfig | DeviceSpec],
        bus: Bus | None,
        client: MqttClient | None,
        metrics: Metrics | None = None,
        *,
        dialects: Sequence[Dialect] | None = None,
        on_event: EventCallback | None = None,
        on_status: StatusCallback | None = None,
        held_open_s: float = 120.0,
        forced_window_s: float = 10.0,
        failed_attempts: int = 3,
        failed_window_s: float = 60.0,
        tick_s: float = 1.0,
    ) -> None:
        self.bus = bus
        self.client = client
        self.metrics = metrics
        self.on_event = on_event
        self.on_status = on_status
        self.held_open_s = held_open_s
        self.forced_window_s = forced_window_s
        self.failed_attempts = failed_attempts
        self.failed_window_s = failed_window_s
        self.tick_s = tick_s
        self.counts: Counter[str] = Counter()
        specs = [DeviceSpec.of(d) for d in devices]
        self.devices: dict[str, DeviceState] = {s.id: DeviceState(s) for s in specs}
        seen: dict[str, str] = {}
        for spec in specs:
            if spec.topic and spec.topic in seen:
                log.warning("devices %s and %s share topic %s; using %s",
                            seen[spec.topic], spec.id, spec.topic, spec.id)
            seen[spec.topic] = spec.id
        self.dialects: list[Dialect] = list(dialects) if dialects is not None else dialects_for(specs)
        self._logged: set[str] = set()  # topics / unknown devices already logged (bounded)
        self._started = time.time()
        self._filters_changed = asyncio.Event()
        self._subscribed: set[str] = set()
        self.ready = asyncio.Event()  # set once run() has subscribed every device topic

    # ------------------------------------------------------------------ runtime
    def filters(self) -> list[str]:
        return list(dict.fromkeys(f for d in self.dialects for f in d.filters()))

    async def run(self) -> None:
        """Subscribe, then decode messages and check timers forever."""
        if self.client is None:
            raise RuntimeError("DeviceHub.run() needs an MQTT client")
        await self._sync_subscriptions(self.client)
        self._started = time.time()
        self.ready.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume(self.client), name="mqtt-devices-consume")
            tg.create_task(self._ticker(), name="mqtt-devices-timers")
            tg.create_task(self._resubscribe(self.client), name="mqtt-devices-discovery")

    async def _consume(self, client: MqttClient) -> None:
        async for msg in client.messages():
            self.handle(msg.topic, msg.payload)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.tick()

    async def _resubscribe(self, client: MqttClient) -> None:
        while True:  # discovery added or removed state topics
            await self._filters_changed.wait()
            self._filters_changed.clear()
            await self._sync_subscriptions(client)

    async def _sync_subscriptions(self, client: MqttClient) -> None:
        wanted = self.filters()
        for topic_filter in wanted:
            if topic_filter not in self._subscribed:
                self._subscribed.add(topic_filter)
                await client.subscribe(topic_filter, qos=1)
        for topic_filter in self._subscribed - set(wanted):
            self._subscribed.discard(topic_filter)
            await client.unsubscribe(topic_filter)

    def status(self) -> list[dict[str, Any]]:
        return [st.status() for st in self.devices.values()]

    # ------------------------------------------------------------------ decoding
    def handle(self, topic: str, payload: bytes, now: float | None = None) -> list[SourceEvent]:
        """Decode one message; publish and return the events it caused. Never raises."""
        now = time.time() if now is None else now
        try:
            return self._handle(topic, payload, now)
        except Exception as exc:  # a bug in a dialect or here must not stop the stream
            self._count("error")
            if self._once(f"error:{topic}"):
                log.exception("MQTT message on %r could not be handled (%s); sample %r",
                              topic[:200], type(exc).__name__, payload[:64])
            return []

    def _handle(self, topic: str, payload: bytes, now: float) -> list[SourceEvent]:
        decoded: list[Decoded] | None = None
        for dialect in self.dialects:
            try:
                decoded = dialect.decode(topic, payload)
            except PayloadError as exc:
                self._bad(exc, topic, payload, dialect)
                return []
            if decoded is not None:
                break
        if decoded is None:
            self._count("unknown_topic")
            if self._once(f"topic:{topic}"):
                log.warning("MQTT message on unconfigured topic %r ignored (counted)", topic[:200])
            return []
        self._count(decoded[0].result if decoded else "ignored")
        events: list[SourceEvent] = []
        for item in decoded:
            events += self._apply_decoded(item, now)
        return events

    def _apply_decoded(self, item: Decoded, now: float) -> list[SourceEvent]:
        if item.removed or item.spec is not None:
            self._filters_changed.set()
        if item.removed:
            gone = self.devices.pop(item.device, None)
            if gone is not None:
                log.info("device %s removed by discovery", item.device)
                self._emit_status({**gone.status(), "status": "offline", "removed": True})
            return []
        st = self.devices.get(item.device)
        if item.spec is not None:
            if st is None:
                log.info("device %s (%s) discovered", item.spec.id, item.spec.kind)
                st = self.devices[item.spec.id] = DeviceState(item.spec)
            else:
                st.cfg = item.spec
            self._publish(st, [])
        if item.reading is None or st is None:
            return []
        events = self._apply(st, item.reading, now)
        self._publish(st, events)
        return events

    def tick(self, now: float | None = None) -> list[SourceEvent]:
        """Timers: doors held open, devices silent too long."""
        now = time.time() if now is None else now
        out: list[SourceEvent] = []
        for st in list(self.devices.values()):
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
        if r.battery_low is not None:
            if r.battery_low and not st.low_battery_sent:
                st.low_battery_sent = True
                ev.append(self._event(st, EventKind.LOW_BATTERY, at,
                                      {"battery": st.battery, "reason": "flag"}))
            elif not r.battery_low and (st.battery is None or st.battery >= BATTERY_REARM):
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
                method = r.method or "unknown"
                st.last_unlock_at, st.last_unlock_method = now, method
                ev.append(self._event(st, EventKind.LOCK_UNLOCKED, at, {"method": method, **extra}))

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
        if c.source is not None:
            body["source"] = c.source
        st.last_event, st.last_event_at = str(kind), at
        return SourceEvent(source_id=c.id, kind=kind, at=at, grid=c.grid or None, data=body)

    def _publish(self, st: DeviceState, events: list[SourceEvent]) -> None:
        from hub.bus import TOPIC_SOURCE_EVENT

        for event in events:
            if self.bus is not None:
                self.bus.publish(TOPIC_SOURCE_EVENT, event)
            if self.on_event is not None:
                self.on_event(event)
        status = st.status()
        compare = {k: v for k, v in status.items() if k != "last_seen"}
        if compare != st.published_status:
            st.published_status = compare
            self._emit_status(status)

    def _emit_status(self, status: dict[str, Any]) -> None:
        from hub.bus import TOPIC_DEVICE

        if self.bus is not None:
            self.bus.publish(TOPIC_DEVICE, status)
        if self.on_status is not None:
            self.on_status(status)

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        if self.metrics is not None:
            self.metrics.mqtt_messages.labels(result=result).inc()

    def _once(self, key: str) -> bool:
        """True the first time ``key`` is seen (at most 1000 keys are remembered)."""
        if key in self._logged or len(self._logged) >= 1000:
            return False
        self._logged.add(key)
        return True

    def _bad(self, exc: PayloadError, topic: str, payload: bytes, dialect: Dialect) -> None:
        self._count(exc.result)
        st = self.devices.get(exc.device) if exc.device else None
        if st is not None:
            if st.bad_logged:
                return
            st.bad_logged = True
            what = f"device {st.cfg.id} ({topic[:200]}, {dialect.name})"
        elif not self._once(f"bad:{exc.device or topic}"):
            return
        else:
            what = f"{'device ' + exc.device if exc.device else 'message'} ({topic[:200]}, {dialect.name})"
        log.warning("%s: ignored a bad payload (%s): %s; sample %r "
                    "(further bad payloads from it are only counted)",
                    what, exc.result, str(exc)[:200], payload[:64])


def _lock_word(locked: bool | None) -> str:
    return "unknown" if locked is None else ("locked" if locked else "unlocked")
