"""Simulated village sensors for the demo: smart locks and door contacts publishing on a real broker.

This is a far-edge device simulator: it only talks MQTT (through its own
:class:`adapters.mqtt_client.MqttClient`), in each device's dialect, so the hub decodes it exactly like
real hardware. Traffic:

- at start: availability ``online`` (retained, like Zigbee2MQTT) and each device's current state;
- residents: the smart lock unlocks (fingerprint, PIN keypad or card), a few seconds later the door
  contact opens, then closes, then the lock re-locks;
- a door FORCED OPEN once within the first ``first_forced_s`` (≤ 15 s) and then about every
  ``forced_every_s``: the contact opens while the lock stays locked and nobody unlocked it (a lock without
  a contact sends its forced-door alarm instead);
- occasionally three failed PIN attempts in a row; battery reports that slowly drain (one device starts
  near the low-battery threshold).

Sequence timings shrink with ``interval_s`` (``interval_s / 8``) so tests can run the demo fast.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from adapters.mqtt_client import MqttClient
from hub.config import DeviceConfig

log = logging.getLogger(__name__)

#: No unlock on a door's lock for this long before a simulated forced opening (DeviceHub uses 10 s).
FORCED_QUIET_S = 12.0
_METHODS = (("fingerprint", "fingerprint_unlock"), ("keypad", "unlock"), ("rfid", "unlock"))


@dataclass(slots=True)
class _Sim:
    cfg: DeviceConfig
    battery: float
    locked: bool = True
    door_open: bool = False
    last_unlock: float = float("-inf")


@dataclass(slots=True)
class _Door:
    contact: _Sim | None
    lock: _Sim | None
    name: str = field(default="")


class DemoSensors:
    def __init__(
        self,
        devices: list[DeviceConfig],
        client: MqttClient,
        interval_s: float = 8.0,
        rng_seed: int | None = None,
        *,
        forced_every_s: float = 60.0,
        first_forced_s: float | None = None,
        failed_probability: float = 0.15,
    ) -> None:
        self.client = client
        self.interval_s = interval_s
        self.rng = random.Random(rng_seed)
        self.forced_every_s = forced_every_s
        self.first_forced_s = first_forced_s if first_forced_s is not None else min(2 * interval_s, 15.0)
        self.failed_probability = failed_probability
        self.scale = min(1.0, interval_s / 8.0)
        self.counts: Counter[str] = Counter()
        self.sims = {d.id: _Sim(d, battery=float(self.rng.randint(55, 100))) for d in devices}
        if self.sims:  # one device near the low-battery threshold so the demo shows that alert
            self.sims[sorted(self.sims)[-1]].battery = 21.0
        self.doors = self._pair_doors()

    def _pair_doors(self) -> list[_Door]:
        doors: list[_Door] = []
        linked: set[str] = set()
        for sim in self.sims.values():
            if sim.cfg.kind == "door_contact":
                lock = self.sims.get(sim.cfg.lock) if sim.cfg.lock else None
                if lock is not None:
                    linked.add(lock.cfg.id)
                doors.append(_Door(sim, lock, sim.cfg.id))
        doors += [_Door(None, s, s.cfg.id) for s in self.sims.values()
                  if s.cfg.kind == "smart_lock" and s.cfg.id not in linked]
        return doors

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        if not self.doors:
            log.info("demo sensors: no devices configured; nothing to simulate")
            return
        log.info("demo sensors: simulating %d devices on %s (mean interval %.1fs)",
                 len(self.sims), self.client.safe_url, self.interval_s)
        for sim in self.sims.values():
            await self.client.publish(sim.cfg.topic + "/availability", {"state": "online"}, retain=True)
            await self._state(sim)
        # residents use the other doors until the first forced opening (early, so the demo shows it)
        stop = asyncio.Event()
        early = asyncio.create_task(self._early_residents(self.doors[1:], stop), name="demo-early-residents")
        try:
            await asyncio.sleep(self.first_forced_s)
            stop.set()
            await self.forced_entry(self.doors[0])
            await early
        finally:
            early.cancel()
        next_forced = time.monotonic() + self._jitter(self.forced_every_s)
        while True:
            await asyncio.sleep(min(3 * self.interval_s, self.rng.expovariate(1 / self.interval_s)))
            if time.monotonic() >= next_forced:
                await self.forced_entry()
                next_forced = time.monotonic() + self._jitter(self.forced_every_s)
            elif self.rng.random() < self.failed_probability:
                await self.failed_attempts()
            else:
                await self.resident_entry()
            if self.rng.random() < 0.2:
                sim = self.rng.choice(list(self.sims.values()))
                await self._state(sim)

    async def _early_residents(self, doors: list[_Door], stop: asyncio.Event) -> None:
        while doors and not stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.2, 0.6) * self.interval_s)
            if not stop.is_set():
                await self.resident_entry(self.rng.choice(doors))

    def _jitter(self, seconds: float) -> float:
        return seconds * self.rng.uniform(0.8, 1.2)

    async def _pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high) * self.scale)

    # ------------------------------------------------------------------ scenarios
    async def resident_entry(self, door: _Door | None = None) -> None:
        door = door or self.rng.choice(self.doors)
        source, action = self.rng.choice(_METHODS)
        if door.lock is not None:
            await self._unlock(door.lock, source, action)
            await self._pause(1.0, 3.0)
        if door.contact is not None:
            await self._door(door.contact, True)
            await self._pause(3.0, 8.0)
            await self._door(door.contact, False)
            await self._pause(0.5, 2.0)
        if door.lock is not None:
            await self._relock(door.lock)
        self.counts["resident"] += 1

    async def forced_entry(self, door: _Door | None = None) -> None:
        """A door opened while its lock is locked and nobody unlocked it (at night in the demo)."""
        door = door or min(self.doors, key=lambda d: d.lock.last_unlock if d.lock else float("-inf"))
        if door.lock is not None:
            quiet = time.monotonic() - door.lock.last_unlock
            if quiet < FORCED_QUIET_S:
                await asyncio.sleep(FORCED_QUIET_S - quiet)
            if not door.lock.locked:
                await self._relock(door.lock)
        log.info("demo sensors: forcing door %s open", door.name)
        if door.contact is not None:
            await self._door(door.contact, True)
            self.counts["forced"] += 1
            await self._pause(5.0, 15.0)
            await self._door(door.contact, False)
        elif door.lock is not None:
            await self._send(door.lock, {"action": "forced_door_open_under_door_locked_condition"},
                             {"event": "forced"})
            self.counts["forced"] += 1

    async def failed_attempts(self, attempts: int = 3) -> None:
        locks = [d.lock for d in self.doors if d.lock is not None]
        if not locks:
            return
        lock = self.rng.choice(locks)
        for _ in range(attempts):
            await self._send(lock, {"action": "unlock_failure_invalid_pin_or_id",
                                    "action_source_name": "keypad", **self._lock_state(lock)},
                             {"event": "fail", "method": "password"})
            await self._pause(2.0, 6.0)
        self.counts["failed"] += 1

    # ------------------------------------------------------------------ device messages
    async def _unlock(self, lock: _Sim, source: str, action: str) -> None:
        lock.locked, lock.last_unlock = False, time.monotonic()
        await self._send(lock, {"action": action, "action_source_name": source,
                                "action_user": self.rng.randint(1, 40), **self._lock_state(lock)},
                         {"event": "unlock", "method": source})

    async def _relock(self, lock: _Sim) -> None:
        lock.locked = True
        await self._send(lock, {"action": "auto_lock", **self._lock_state(lock)}, {"event": "lock"})

    async def _door(self, contact: _Sim, open_: bool) -> None:
        contact.door_open = open_
        await self._send(contact, {"contact": not open_, "tamper": False},
                         {"event": "door_open" if open_ else "door_close"})

    async def _state(self, sim: _Sim) -> None:
        """A periodic state/battery report (no event)."""
        if sim.cfg.kind == "smart_lock":
            await self._send(sim, self._lock_state(sim), {"event": "battery", "locked": sim.locked})
        else:
            await self._send(sim, {"contact": not sim.door_open, "tamper": False},
                             {"event": "battery", "door": "open" if sim.door_open else "closed"})

    def _lock_state(self, lock: _Sim) -> dict[str, Any]:
        return {"state": "LOCK" if lock.locked else "UNLOCK",
                "lock_state": "locked" if lock.locked else "unlocked"}

    async def _send(self, sim: _Sim, z2m: dict[str, Any], plain: dict[str, Any]) -> None:
        if self.rng.random() < 0.1:  # batteries drain slowly
            sim.battery = max(1.0, sim.battery - 1.0)
        if sim.cfg.dialect == "zigbee2mqtt":
            payload = {**z2m, "battery": round(sim.battery), "linkquality": self.rng.randint(40, 220)}
        else:
            payload = {**plain, "battery": round(sim.battery), "ts": round(time.time(), 3)}
        await self.client.publish(sim.cfg.topic, payload, qos=1)
