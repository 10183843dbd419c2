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
adapter queues them for its ``events()``). The state machine itself is :mod:`adapters.device_state`.

Devices found by discovery (Home Assistant configs, mapping ``auto_devices``) are reported (their first
status row, and every row after a redefinition) only once the broker has acknowledged the subscription
of their state topics (SUBACK): from then on nothing they publish is lost. Limitation: a *non-retained*
state a device publishes between its config message and that acknowledgement reaches no subscriber and
is lost (MQTT delivers only retained messages to late subscribers). Devices that retain their state
(Zigbee2MQTT ``retain: true`` per device) lose nothing; the others are current again at their next
change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from adapters.device_state import DeviceState, DoorLockRules
from adapters.dialects import Decoded, DeviceSpec, Dialect, PayloadError, dialects_for
from hub.events import SourceEvent

if TYPE_CHECKING:
    from adapters.mqtt_client import MqttClient
    from hub.bus import Bus
    from hub.config import DeviceConfig
    from hub.metrics import Metrics

__all__ = ["DeviceHub", "DeviceState", "EventCallback", "StatusCallback"]

log = logging.getLogger(__name__)

YIELD_EVERY = 64  # messages handled between yields to the event loop

EventCallback = Callable[[SourceEvent], None]
StatusCallback = Callable[[dict[str, Any]], None]


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
        self.tick_s = tick_s
        self.counts: Counter[str] = Counter()
        self._counters: dict[str, Any] = {}  # result -> labelled Prometheus counter
        specs = [DeviceSpec.of(d) for d in devices]
        self.devices: dict[str, DeviceState] = {s.id: DeviceState(s) for s in specs}
        self.rules = DoorLockRules(self.devices, held_open_s, forced_window_s, failed_attempts,
                                   failed_window_s)
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
        self._live = False  # run() is subscribing: (re)defined devices wait for their SUBACK
        self._generation = 0  # discovery changes so far
        self._unconfirmed: dict[str, int] = {}  # device → generation whose subscription it waits for
        self.ready = asyncio.Event()  # set once run() has subscribed every device topic

    @property
    def held_open_s(self) -> float:
        return self.rules.held_open_s

    @property
    def forced_window_s(self) -> float:
        return self.rules.forced_window_s

    @property
    def failed_attempts(self) -> int:
        return self.rules.failed_attempts

    @property
    def failed_window_s(self) -> float:
        return self.rules.failed_window_s

    # ------------------------------------------------------------------ runtime
    def filters(self) -> list[str]:
        return list(dict.fromkeys(f for d in self.dialects for f in d.filters()))

    async def run(self) -> None:
        """Subscribe, then decode messages and check timers forever."""
        if self.client is None:
            raise RuntimeError("DeviceHub.run() needs an MQTT client")
        self._live = True
        await self._sync_subscriptions(self.client)
        self._started = time.time()
        self.ready.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume(self.client), name="mqtt-devices-consume")
            tg.create_task(self._ticker(), name="mqtt-devices-timers")
            tg.create_task(self._resubscribe(self.client), name="mqtt-devices-discovery")

    async def _consume(self, client: MqttClient) -> None:
        handled = 0
        async for msg in client.messages():
            self.handle(msg.topic, msg.payload)
            handled += 1
            if handled % YIELD_EVERY == 0:
                # A backlog replayed on reconnect arrives without a pause: let the consumers of our
                # events run, so their bounded queues drain instead of overflowing.
                await asyncio.sleep(0)

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
        """Subscribe new filters and unsubscribe old ones (in batches), then report the devices
        defined before this pass: the broker has acknowledged their topics."""
        generation = self._generation
        wanted = self.filters()
        keep = set(wanted)
        new = [f for f in wanted if f not in self._subscribed]
        gone = [f for f in self._subscribed if f not in keep]
        self._subscribed.update(new)
        self._subscribed.difference_update(gone)
        if new:
            await client.subscribe_all(new, qos=1)
        if gone:
            await client.unsubscribe_all(gone)
        if self._unconfirmed:
            await client.wait_online()  # offline: the reconnect subscribes every filter before online
            self._confirm(generation)

    def _confirm(self, generation: int) -> None:
        for device in [d for d, g in self._unconfirmed.items() if g <= generation]:
            del self._unconfirmed[device]
            st = self.devices.get(device)
            if st is not None:
                self._publish(st, [])

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
            self._generation += 1
            self._filters_changed.set()
        if item.removed:
            gone = self.devices.pop(item.device, None)
            self._unconfirmed.pop(item.device, None)
            if gone is not None:
                log.info("device %s removed by discovery", item.device)
                if gone.published_status is not None:  # the hub was told about it: tell it it is gone
                    self._emit_status({**gone.status(), "status": "offline", "removed": True})
            return []
        st = self.devices.get(item.device)
        if item.spec is not None:
            if st is None:
                log.info("device %s (%s) discovered", item.spec.id, item.spec.kind)
                st = self.devices[item.spec.id] = DeviceState(item.spec)
            else:
                st.cfg = item.spec
            if self._live:  # reported once its (new) topics are subscribed
                self._unconfirmed[st.cfg.id] = self._generation
            self._publish(st, [])
        if item.reading is None or st is None:
            return []
        events = self.rules.apply(st, item.reading, now)
        self._publish(st, events)
        return events

    def tick(self, now: float | None = None) -> list[SourceEvent]:
        """Timers: doors held open, devices silent too long."""
        now = time.time() if now is None else now
        out: list[SourceEvent] = []
        for st in list(self.devices.values()):
            events = self.rules.timers(st, now, self._started)
            self._publish(st, events)
            out.extend(events)
        return out

    # ------------------------------------------------------------------ output
    def _publish(self, st: DeviceState, events: list[SourceEvent]) -> None:
        from hub.bus import TOPIC_SOURCE_EVENT

        for event in events:
            if self.bus is not None:
                self.bus.publish(TOPIC_SOURCE_EVENT, event)
            if self.on_event is not None:
                self.on_event(event)
        if st.cfg.id in self._unconfirmed:
            return
        # What the row shows, as a cheap tuple: most messages change nothing (the row is not rebuilt)
        key = (st.online, st.door_open, st.locked, st.battery, st.tamper, st.last_event, st.last_event_at,
               id(st.cfg))
        if key != st.published_key:
            st.published_key = key
            status = st.status()
            st.published_status = status
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
            counter = self._counters.get(result)
            if counter is None:  # labels() is a lookup under a lock: once per result, not per message
                counter = self._counters[result] = self.metrics.mqtt_messages.labels(result=result)
            counter.inc()

    def _once(self, key: str) -> bool:
        """True the first time ``key`` is seen (at most 1000 keys are remembered)."""
        if key in self._logged or len(self._logged) >= 1000:
            return False
        self._logged.add(key)
        return True

    def _bad(self, exc: PayloadError, topic: str, payload: bytes, dialect: Dialect) -> None:
        self._count(exc.result)
        st = self.devices.get(exc.device) if exc.device else None
        if exc.log_key is not None:  # e.g. a device limit: one line for every message it refuses
            if self._once(f"bad:{exc.log_key}"):
                log.warning("%s (%s): %s; further messages refused for this reason are only counted (%s)",
                            dialect.name, topic[:200], str(exc)[:200], exc.result)
            return
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
