"""A simulated village access system for the demo, speaking its OWN JSON format over MQTT.

It shows the declarative ``mapping`` dialect at work: the simulator is driven by the same
``sources:`` entry the hub decodes with, read backwards — each mapping rule's topic pattern, field
paths and value maps tell it where to put what — so whatever format the demo config describes is what
goes on the wire, and the hub understands it with configuration only. Far edge: it only publishes MQTT.

Traffic per door: residents unlock (fingerprint, card or password), open, close; now and then three
wrong codes in a row; a forced opening about every ``forced_every_s``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from adapters.dialects.json_events import EVENTS
from adapters.dialects.mapping import MappingRule
from adapters.mqtt import MqttSourceConfig
from adapters.mqtt_client import MqttClient
from hub.errors import ConfigError

log = logging.getLogger(__name__)

SCENARIO_EVENTS = ("lock_unlocked", "door_opened", "door_closed", "door_forced", "unlock_failed")


def _canonical(name: str) -> frozenset[tuple[str, Any]]:
    return frozenset(EVENTS[name].items()) if name in EVENTS else frozenset({("name", name)})


class VillageFormat:
    """Builds a village system's messages from a mapping rule (its field paths and value maps, inverted)."""

    def __init__(self, rule: MappingRule) -> None:
        if "+device" not in rule.topic.split("/") or "event" not in rule.fields:
            raise ConfigError("the demo village system needs a mapping rule with a +device topic level "
                              "and an event field", field="mapping")
        self.rule = rule
        events, methods = rule.values.get("event", {}), rule.values.get("method", {})
        self._event_codes = {_canonical(str(hub)): system for system, hub in events.items()}
        self._method_codes = {str(hub): system for system, hub in methods.items()}

    def topic(self, device: str) -> str:
        return "/".join(device if level == "+device" else level for level in self.rule.topic.split("/"))

    def can(self, event: str) -> bool:
        return _canonical(event) in self._event_codes or not self.rule.values.get("event")

    def payload(self, event: str, method: str | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {"event": self._event_codes.get(_canonical(event), event),
                                  "ts": int(time.time() * 1000)}
        if method is not None and "method" in self.rule.fields:
            values["method"] = self._method_codes.get(method, method)
        body: dict[str, Any] = {}
        for target, value in values.items():
            path = self.rule.fields.get(target)  # type: ignore[call-overload]
            if path and path != "$" and not path.startswith("topic:"):
                _put(body, path, value)
        return body


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        body = body.setdefault(key, {})
    body[keys[-1]] = value


class DemoVillage:
    def __init__(self, source: MqttSourceConfig, client: MqttClient, interval_s: float = 10.0,
                 forced_every_s: float = 90.0, rng_seed: int | None = None) -> None:
        if not source.mapping or not source.devices:
            raise ConfigError(f"demo village system {source.id!r} needs mapping rules and devices")
        self.source = source
        self.client = client
        self.format = VillageFormat(source.mapping[0])
        self.interval_s = interval_s
        self.forced_every_s = forced_every_s
        self.rng = random.Random(rng_seed)
        self.published = 0

    async def send(self, device: str, event: str, method: str | None = None) -> None:
        if self.format.can(event):
            await self.client.publish(self.format.topic(device), self.format.payload(event, method), qos=1)
            self.published += 1

    async def run(self) -> None:
        doors = [d.id for d in self.source.devices]
        log.info("demo village system %s: simulating %d doors on %s", self.source.id, len(doors),
                 self.format.topic("<door>"))
        next_forced = time.monotonic() + self.forced_every_s / 3
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.interval_s)
            door = self.rng.choice(doors)
            if time.monotonic() >= next_forced:
                await self.send(door, "door_forced")
                next_forced = time.monotonic() + self.forced_every_s * self.rng.uniform(0.8, 1.2)
            elif self.rng.random() < 0.15:
                for _ in range(3):
                    await self.send(door, "unlock_failed", "password")
                    await asyncio.sleep(self.rng.uniform(1.0, 3.0))
            else:
                await self.send(door, "lock_unlocked", self.rng.choice(("fingerprint", "card", "password")))
                await asyncio.sleep(self.rng.uniform(1.0, 2.0))
                await self.send(door, "door_opened")
                await asyncio.sleep(self.rng.uniform(3.0, 6.0))
                await self.send(door, "door_closed")
