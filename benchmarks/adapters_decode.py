"""Part 1 of the adapters benchmark: what each MQTT dialect and the device state machine cost per message.

For every dialect (zigbee2mqtt, json, tasmota, homeassistant, mapping) a deterministic, realistic message
mix over ~200 devices (a quarter of them smart locks) goes through :meth:`DeviceHub.handle` — routing,
decoding, the per-device state machine, status rows and the hub's Prometheus counter, exactly what the
``mqtt`` source runs per message — against the baseline of a bare ``json.loads`` of the same payloads
(``bytes.decode`` for the few plain-text ones: LWT/availability words). Mixes: mostly periodic reports
that change nothing (Zigbee2MQTT and Tasmota republish whole states), some door/lock changes, unlocks
with methods, failed attempts, availability messages. Home Assistant devices are the ones Zigbee2MQTT's
HA integration announces (door + battery + tamper entities, or lock + battery, on one state topic);
their discovery messages are fed first, untimed.
"""

from __future__ import annotations

import gc
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters.dialects import DeviceKind, DeviceSpec, Dialect, TopicDialect, json_events, zigbee2mqtt
from adapters.dialects.homeassistant import HomeAssistant
from adapters.dialects.mapping import MappingDialect, MappingRule
from adapters.dialects.tasmota import Tasmota
from adapters.mqtt_devices import DeviceHub
from benchmarks.mqtt_publisher import device_ids
from hub.metrics import Metrics

DIALECTS = ("zigbee2mqtt", "json", "tasmota", "homeassistant", "mapping")
Message = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class Workload:
    dialect: str
    make_dialect: Callable[[], tuple[Dialect, list[DeviceSpec]]]
    setup: list[Message]  # fed before timing (discovery)
    messages: list[Message]


def _js(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _spec(dev: str, dialect: str, topic: str = "") -> DeviceSpec:
    kind: DeviceKind = "smart_lock" if dev.startswith("lock") else "door_contact"
    return DeviceSpec(id=dev, kind=kind, topic=topic or dev, dialect=dialect, grid="440105001001",
                      cameras=("cam-01",), source="bench")


class _Mix:
    """Per-device state and a random walk over it: which device speaks next, and whether it changes."""

    def __init__(self, devices: int, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.ids = device_ids(devices)
        self.flag = dict.fromkeys(self.ids, False)  # door open / lock unlocked
        self.battery = {d: self.rnd.randint(25, 100) for d in self.ids}  # drains slowly

    def next(self, change: float = 0.3) -> tuple[str, bool, bool]:
        """(device, its state, whether it just changed)."""
        dev = self.ids[self.rnd.randrange(len(self.ids))]
        changed = self.rnd.random() < change
        if changed:
            self.flag[dev] = not self.flag[dev]
        if self.rnd.random() < 0.01:
            self.battery[dev] = max(5, self.battery[dev] - 1)
        return dev, self.flag[dev], changed


def _z2m_body(mix: _Mix, dev: str, flag: bool, changed: bool) -> dict[str, Any]:
    r = mix.rnd
    common = {"battery": mix.battery[dev], "linkquality": r.randint(40, 200)}
    if dev.startswith("door"):
        return {**common, "battery_low": False, "contact": not flag, "tamper": r.random() < 0.01,
                "voltage": 2900 + r.randint(0, 200)}
    action = ""
    if changed and flag:
        action = r.choice(("fingerprint_unlock", "password_unlock", "rfid_card_open", "unlock"))
    elif changed:
        action = "auto_lock"
    elif r.random() < 0.05:
        action = "unlock_failure_invalid_pin_or_id"
    return {**common, "action": action, "action_source_name": r.choice(("keypad", "rfid", "manual", "rf")),
            "action_user": r.randint(1, 20), "lock_state": "unlocked" if flag else "locked",
            "state": "UNLOCK" if flag else "LOCK"}


def zigbee2mqtt_workload(devices: int, n: int, seed: int = 11) -> Workload:
    mix = _Mix(devices, seed)
    specs = [_spec(d, "zigbee2mqtt", f"zigbee2mqtt/{d}") for d in mix.ids]
    msgs: list[Message] = []
    for _ in range(n):
        dev, flag, changed = mix.next()
        if mix.rnd.random() < 0.02:
            msgs.append((f"zigbee2mqtt/{dev}/availability", _js({"state": "online"})))
        else:
            msgs.append((f"zigbee2mqtt/{dev}", _js(_z2m_body(mix, dev, flag, changed))))
    return Workload("zigbee2mqtt", lambda: (TopicDialect(specs, zigbee2mqtt.decode, "zigbee2mqtt"), specs),
                    [], msgs)


def json_workload(devices: int, n: int, seed: int = 12) -> Workload:
    mix = _Mix(devices, seed)
    specs = [_spec(d, "json", f"village/access/{d}") for d in mix.ids]
    msgs: list[Message] = []
    for _ in range(n):
        dev, flag, changed = mix.next(0.5)
        r = mix.rnd
        ts = int(time.time() * 1000)
        if not changed:
            body: dict[str, Any] = {"event": r.choice(("heartbeat", "heartbeat", "status")),
                                    "battery": mix.battery[dev], "ts": ts}
        elif dev.startswith("door"):
            body = {"device": dev, "event": {"type": "door_open" if flag else "door_close", "ts": ts}}
        elif flag:
            body = {"event": "unlock", "method": r.choice(("card", "face", "fingerprint", "password")),
                    "ts": ts, "battery": mix.battery[dev]}
        else:
            body = {"event": r.choice(("lock", "lock", "fail")), "ts": ts}
        msgs.append((f"village/access/{dev}", _js(body)))
    return Workload("json", lambda: (TopicDialect(specs, json_events.decode, "json"), specs), [], msgs)


def tasmota_workload(devices: int, n: int, seed: int = 13) -> Workload:
    mix = _Mix(devices, seed)
    specs = [_spec(d, "tasmota", f"tasmota_{d}") for d in mix.ids]
    msgs: list[Message] = []
    for _ in range(n):
        dev, flag, changed = mix.next()
        r, t = mix.rnd, f"tasmota_{dev}"
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        roll = r.random()
        if roll < 0.02:
            msgs.append((f"tele/{t}/LWT", b"Online"))
        elif roll < 0.25:
            msgs.append((f"tele/{t}/STATE", _js({
                "Time": now, "Uptime": "3T02:11:05", "UptimeSec": 266000, "Heap": 25, "LoadAvg": 19,
                "POWER": "ON" if flag and dev.startswith("lock") else "OFF",
                "Wifi": {"AP": 1, "SSId": "village", "RSSI": r.randint(40, 90),
                         "Signal": -r.randint(40, 90)}})))
        elif dev.startswith("lock") and changed:
            msgs.append((f"stat/{t}/RESULT", _js({"POWER": "ON" if flag else "OFF"})))
        else:
            msgs.append((f"tele/{t}/SENSOR", _js({"Time": now, "Switch1": "ON" if flag else "OFF",
                                                   "Battery": mix.battery[dev]})))
    return Workload("tasmota", lambda: (Tasmota(specs), specs), [], msgs)


def homeassistant_workload(devices: int, n: int, seed: int = 14) -> Workload:
    mix = _Mix(devices, seed)
    setup: list[Message] = []
    for dev in mix.ids:
        state_t = f"zigbee2mqtt/{dev}"
        base = {"device": {"identifiers": [f"zigbee2mqtt_{dev}"], "manufacturer": "Aqara",
                           "model": "ZNMS12LM" if dev.startswith("lock") else "MCCGQ11LM", "name": dev},
                "availability": [{"topic": f"{state_t}/availability",
                                  "value_template": "{{ value_json.state }}"}],
                "state_topic": state_t}
        entities: list[tuple[str, dict[str, Any]]] = [
            ("sensor/battery", {"device_class": "battery", "value_template": "{{ value_json.battery }}"})]
        if dev.startswith("lock"):
            entities.append(("lock/lock", {"value_template": "{{ value_json.state }}", "state_locked": "LOCK",
                                           "state_unlocked": "UNLOCK"}))
        else:
            entities += [("binary_sensor/contact", {"device_class": "door", "payload_on": False,
                                                    "payload_off": True,
                                                    "value_template": "{{ value_json.contact }}"}),
                         ("binary_sensor/tamper", {"device_class": "tamper", "payload_on": True,
                                                   "payload_off": False,
                                                   "value_template": "{{ value_json.tamper }}"})]
        for path, extra in entities:
            component, obj = path.split("/")
            setup.append((f"homeassistant/{component}/{dev}/{obj}/config",
                          _js({**base, **extra, "unique_id": f"{dev}_{obj}"})))
    msgs: list[Message] = []
    for _ in range(n):
        dev, flag, changed = mix.next()
        if mix.rnd.random() < 0.02:
            msgs.append((f"zigbee2mqtt/{dev}/availability", _js({"state": "online"})))
        else:
            msgs.append((f"zigbee2mqtt/{dev}", _js(_z2m_body(mix, dev, flag, changed))))
    defaults = DeviceSpec(id="-", kind="door_contact", dialect="homeassistant", grid="440105001001",
                          source="bench")
    return Workload("homeassistant", lambda: (HomeAssistant(defaults=defaults), []), setup, msgs)


VILLAGE_RULES = [
    MappingRule(topic="village/+device/event",
                fields={"event": "data.type", "method": "data.method", "ts": "data.time",
                        "battery": "status.battery"},
                values={"event": {"1": "door_opened", "2": "door_closed", "3": "door_forced",
                                  "4": "lock_unlocked", "5": "unlock_failed", "6": "lock_locked",
                                  "9": "ignore"},
                        "method": {"1": "fingerprint", "2": "password", "3": "card", "4": "remote",
                                   "5": "key"}}),
    MappingRule(topic="village/+device/lwt", payload="text", fields={"online": "$"},
                values={"online": {"up": True, "down": False}}),
]


def mapping_workload(devices: int, n: int, seed: int = 15) -> Workload:
    mix = _Mix(devices, seed)
    specs = [_spec(d, "mapping") for d in mix.ids]
    msgs: list[Message] = []
    for _ in range(n):
        dev, flag, changed = mix.next(0.5)
        r = mix.rnd
        if r.random() < 0.02:
            msgs.append((f"village/{dev}/lwt", b"up"))
            continue
        if not changed:
            code = 9
        elif dev.startswith("door"):
            code = 1 if flag else 2
        else:
            code = 4 if flag else r.choice((6, 6, 5))
        msgs.append((f"village/{dev}/event", _js({
            "data": {"type": code, "method": r.randint(1, 5), "time": int(time.time() * 1000),
                     "seq": r.randint(1, 1 << 30)},
            "status": {"battery": mix.battery[dev], "rssi": -r.randint(40, 90)}})))
    return Workload("mapping", lambda: (MappingDialect(VILLAGE_RULES, specs), specs), [], msgs)


WORKLOADS: dict[str, Callable[[int, int], Workload]] = {
    "zigbee2mqtt": zigbee2mqtt_workload, "json": json_workload, "tasmota": tasmota_workload,
    "homeassistant": homeassistant_workload, "mapping": mapping_workload,
}


def _baseline(messages: list[Message]) -> float:
    loads = json.loads
    t0 = time.perf_counter()
    for _, payload in messages:
        if payload[:1] in (b"{", b"["):
            loads(payload)
        else:
            payload.decode()
    return time.perf_counter() - t0


def _hub_run(w: Workload) -> tuple[float, int, DeviceHub]:
    dialect, specs = w.make_dialect()
    hub = DeviceHub(specs, None, None, Metrics(), dialects=[dialect], held_open_s=120.0)
    for topic, payload in w.setup:
        hub.handle(topic, payload)
    handle = hub.handle
    events = 0
    t0 = time.perf_counter()
    for topic, payload in w.messages:
        events += len(handle(topic, payload))
    return time.perf_counter() - t0, events, hub


def measure(dialect: str, devices: int, n: int, repeats: int) -> dict[str, Any]:
    """Best of ``repeats`` (a fresh hub each time) for the hub and for the baseline."""
    w = WORKLOADS[dialect](devices, n)
    gc.collect()
    hub_s, base_s = [], []
    events, hub = 0, None
    for _ in range(repeats):
        base_s.append(_baseline(w.messages))
        elapsed, events, hub = _hub_run(w)
        hub_s.append(elapsed)
    assert hub is not None
    counts = dict(hub.counts)
    problems = sum(v for k, v in counts.items() if k not in ("ok", "availability", "ignored", "discovery"))
    return {
        "dialect": dialect, "devices": len(hub.devices), "messages": n,
        "payload_bytes": round(sum(len(p) for _, p in w.messages) / max(1, n)),
        "events": events, "counts": counts, "bad": problems,
        "hub_us": min(hub_s) / n * 1e6, "baseline_us": min(base_s) / n * 1e6,
    }


def run(devices: int, n: int, repeats: int, dialects: tuple[str, ...] = DIALECTS) -> list[dict[str, Any]]:
    return [measure(d, devices, n, repeats) for d in dialects]


def table(rows: list[dict[str, Any]]) -> str:
    head = "| case | hub: `DeviceHub.handle()` | baseline: bare `json.loads` | ratio/overhead |"
    out = [head, "|---|---|---|---|"]
    for r in rows:
        case = (f"{r['dialect']} ({r['devices']} devices, {r['messages']:,} msgs of ~{r['payload_bytes']} B, "
                f"{r['events'] / r['messages']:.2f} events/msg)")
        hub = f"{r['hub_us']:.1f} µs/msg ({1e6 / r['hub_us']:,.0f} msg/s)"
        base = f"{r['baseline_us']:.1f} µs/msg ({1e6 / r['baseline_us']:,.0f} msg/s)"
        over = f"{r['hub_us'] - r['baseline_us']:+.1f} µs/msg ({r['hub_us'] / r['baseline_us']:.1f}×)"
        out.append(f"| {case} | {hub} | {base} | {over} |")
    return "\n".join(out)
