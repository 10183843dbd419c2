"""DeviceHub: state-derived events (forced door, failed attempts, held open, offline) and the broker path."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiomqtt

from adapters.device_state import DeviceState, DoorLockRules
from adapters.dialects import DeviceSpec, Reading
from adapters.dialects.homeassistant import HomeAssistant
from adapters.dialects.mapping import MappingDialect, MappingRule
from adapters.mqtt_client import MqttClient
from adapters.mqtt_devices import DeviceHub
from hub.bus import Bus
from hub.config import DeviceConfig
from hub.events import EventKind, SourceEvent
from hub.metrics import Metrics
from tests.adapters.mqtt_support import require_mosquitto, unique

LOCK = DeviceConfig(id="lock-1", name="3号楼单元门锁", kind="smart_lock", grid="440105001001",
                    topic="zigbee2mqtt/lock-1")
DOOR = DeviceConfig(id="door-1", name="3号楼单元门", kind="door_contact", grid="440105001001",
                    topic="zigbee2mqtt/door-1", lock="lock-1", cameras=["cam-1"], offline_after_s=300)
GATE = DeviceConfig(id="gate-1", kind="door_contact", topic="village/gate-1", dialect="json")


class Harness:
    def __init__(self, devices: list[DeviceConfig] | None = None, **kw: Any) -> None:
        self.bus = Bus()
        self.events_sub = self.bus.subscribe("source_event")
        self.status_sub = self.bus.subscribe("device")
        self.hub = DeviceHub(devices or [LOCK, DOOR, GATE], self.bus, MqttClient(None, "unused"), **kw)

    def send(self, dev: DeviceConfig, payload: dict[str, Any] | bytes, at: float) -> list[str]:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return [str(e.kind) for e in self.hub.handle(dev.topic, raw, now=at)]

    def bus_events(self) -> list[SourceEvent]:
        out = []
        while not self.events_sub.queue.empty():
            out.append(self.events_sub.queue.get_nowait()[1])
        return out

    def statuses(self) -> list[dict[str, Any]]:
        out = []
        while not self.status_sub.queue.empty():
            out.append(self.status_sub.queue.get_nowait()[1])
        return out


def test_resident_entry_is_not_forced() -> None:
    h = Harness()
    assert h.send(LOCK, {"state": "LOCK", "lock_state": "locked", "battery": 90}, 0) == []
    assert h.send(DOOR, {"contact": True, "battery": 80}, 1) == []
    assert h.send(LOCK, {"action": "unlock", "action_source_name": "keypad", "state": "UNLOCK",
                         "lock_state": "unlocked"}, 100) == ["lock_unlocked"]
    assert h.send(DOOR, {"contact": False}, 102) == ["door_opened"]
    assert h.send(DOOR, {"contact": False, "linkquality": 99}, 103) == []  # repeated state: no event
    assert h.send(DOOR, {"contact": True}, 108) == ["door_closed"]
    relock = {"action": "auto_lock", "state": "LOCK", "lock_state": "locked"}
    assert h.send(LOCK, relock, 109) == ["lock_locked"]
    events = h.bus_events()
    opened = next(e for e in events if e.kind == EventKind.DOOR_OPENED)
    assert opened.source_id == "door-1"
    assert opened.grid == "440105001001"
    assert opened.data["unlocked_by"] == "password"
    assert opened.data["lock"] == "lock-1"
    assert opened.data["cameras"] == ["cam-1"]
    closed = next(e for e in events if e.kind == EventKind.DOOR_CLOSED)
    assert closed.data["open_s"] == 6.0


def test_door_opened_while_locked_is_forced() -> None:
    h = Harness()
    h.send(LOCK, {"state": "LOCK", "lock_state": "locked"}, 0)
    h.send(DOOR, {"contact": True}, 1)
    h.send(LOCK, {"action": "unlock", "action_source_name": "rfid", "lock_state": "unlocked"}, 100)
    h.send(LOCK, {"action": "auto_lock", "lock_state": "locked"}, 104)  # re-locked, nobody went in
    # 11 s after the last successful unlock the door opens while the lock reports locked
    assert h.send(DOOR, {"contact": False}, 111) == ["door_forced"]
    forced = h.bus_events()[-1]
    assert forced.kind == EventKind.DOOR_FORCED
    assert forced.data["reason"] == "opened_while_locked"
    assert forced.data["lock_state"] == "locked"
    # within 10 s of an unlock (even if the lock state report says locked) it is a normal opening
    h.send(DOOR, {"contact": True}, 120)
    h.send(LOCK, {"action": "unlock", "action_source_name": "keypad", "lock_state": "locked"}, 130)
    assert h.send(DOOR, {"contact": False}, 135) == ["door_opened"]


def test_unknown_lock_state_is_not_forced_and_explicit_alarm_is() -> None:
    h = Harness()
    assert h.send(DOOR, {"contact": False}, 5) == ["door_opened"]  # lock never reported
    h.send(DOOR, {"contact": True}, 6)
    h.send(LOCK, {"lock_state": "locked"}, 7)
    assert h.send(LOCK, {"action": "forced_door_open_under_door_locked_condition"}, 50) == ["door_forced"]
    # the contact opening right after the lock's own alarm is not reported twice
    assert h.send(DOOR, {"contact": False}, 51) == ["door_opened"]
    assert h.bus_events()[-1].data["forced_reported"] is True
    assert h.send(GATE, {"event": "forced", "ts": 1_700_000_000}, 60) == ["door_forced"]


def test_failed_attempts_window() -> None:
    h = Harness()
    fail = {"action": "unlock_failure_invalid_pin_or_id", "action_source_name": "keypad"}
    assert h.send(LOCK, fail, 0) == []
    assert h.send(LOCK, fail, 50) == []
    assert h.send(LOCK, fail, 70) == []  # the first attempt left the 60 s window
    assert h.send(LOCK, fail, 75) == ["lock_failed_attempts"]
    assert h.bus_events()[-1].data["count"] == 3
    assert h.send(LOCK, fail, 101) == []  # counting starts again
    assert h.send(LOCK, {"action": "tamper_alarm_wrong_code_entry_limit"}, 102) == ["lock_failed_attempts"]


def test_battery_tamper_held_open_and_availability() -> None:
    h = Harness(held_open_s=120)
    assert h.send(DOOR, {"contact": True, "battery": 19, "tamper": False}, 0) == ["low_battery"]
    assert h.send(DOOR, {"contact": True, "battery": 18}, 1) == []  # once
    assert h.send(DOOR, {"contact": True, "battery": 100}, 2) == []  # new batteries re-arm
    assert h.send(DOOR, {"contact": True, "battery": 10, "tamper": True}, 3) == ["low_battery", "tamper"]
    assert h.send(DOOR, {"contact": True, "tamper": True}, 4) == []
    h.send(LOCK, {"lock_state": "unlocked"}, 5)
    h.send(DOOR, {"contact": False}, 10)
    assert h.hub.tick(now=100) == []
    held = h.hub.tick(now=131)
    assert [str(e.kind) for e in held] == ["door_held_open"]
    assert h.hub.tick(now=200) == []
    assert h.send(GATE, {"event": "held_open"}, 210) == ["door_held_open"]

    assert [str(e.kind) for e in h.hub.handle("zigbee2mqtt/door-1/availability", b"offline", now=220)] \
        == ["device_offline"]
    assert h.hub.devices["door-1"].online is False
    assert [str(e.kind) for e in h.hub.handle("zigbee2mqtt/door-1/availability", b'{"state":"online"}',
                                              now=230)] == ["device_online"]
    # silence: door-1 has offline_after_s = 300
    assert [str(e.kind) for e in h.hub.tick(now=531)] == ["device_offline"]
    assert h.hub.tick(now=600) == []
    assert h.send(DOOR, {"contact": False}, 700) == ["device_online"]
    last = h.statuses()[-1]
    assert last["id"] == "door-1"
    assert last["status"] == "online"
    assert last["battery"] == 10.0
    assert last["kind"] == "door_contact"
    assert last["grid"] == "440105001001"
    assert last["last_event"] == "device_online"


def test_bad_payloads_counted_and_logged_once(caplog: Any) -> None:
    metrics = Metrics()
    h = Harness()
    h.hub.metrics = metrics
    for payload in (b"not json", b"\xff\xfe", b'{"contact": "yes"}', b"[1]", b"x" * 70_000):
        assert h.send(DOOR, payload, 1) == []
    assert h.hub.handle("zigbee2mqtt/nobody", b"{}", now=2) == []
    assert h.send(DOOR, {"contact": False}, 3) == ["door_opened"]
    assert dict(h.hub.counts) == {"bad_json": 2, "bad_payload": 2, "too_large": 1, "unknown_topic": 1,
                                  "ok": 1}
    assert metrics.registry.get_sample_value("hub_mqtt_messages_total", {"result": "bad_json"}) == 2
    assert metrics.registry.get_sample_value("hub_mqtt_messages_total", {"result": "ok"}) == 1
    bad_logs = [r for r in caplog.records if "bad payload" in r.getMessage()]
    assert len(bad_logs) == 1
    assert "door-1" in bad_logs[0].getMessage()


async def test_end_to_end_on_mosquitto() -> None:
    url = require_mosquitto()
    prefix = unique("devices")
    lock = LOCK.model_copy(update={"topic": f"{prefix}/lock-1"})
    door = DOOR.model_copy(update={"topic": f"{prefix}/door-1"})
    gate = GATE.model_copy(update={"topic": f"{prefix}/gate-1"})
    bus = Bus()
    events = bus.subscribe("source_event")
    metrics = Metrics()
    async with MqttClient(url, prefix + "-hub", clean_session=True) as client:
        hub = DeviceHub([lock, door, gate], bus, client, metrics)
        task = asyncio.create_task(hub.run())
        try:
            assert await client.wait_online(5)
            await asyncio.wait_for(hub.ready.wait(), 5)
            async with aiomqtt.Client("127.0.0.1", 1883, identifier=prefix + "-dev") as dev:
                async def pub(topic: str, payload: Any) -> None:
                    data = payload if isinstance(payload, bytes) else json.dumps(payload)
                    await dev.publish(topic, data, qos=1)

                await pub(f"{prefix}/door-1/availability", {"state": "online"})
                await pub(lock.topic, {"state": "LOCK", "lock_state": "locked", "battery": 77})
                await pub(door.topic, {"contact": True, "battery": 88})
                await pub(door.topic, b"\x00garbage")
                await pub(door.topic, {"contact": False})  # forced: lock locked, no unlock
                await pub(gate.topic, {"event": {"type": "unlock", "method": "card"}})
                await pub(gate.topic, {"event": "door_open", "ts": 1718000000})
            got: list[SourceEvent] = []
            async with asyncio.timeout(10):
                while len(got) < 3:
                    got.append((await events.get())[1])
            assert [(e.source_id, str(e.kind)) for e in got] == [
                ("door-1", "door_forced"), ("gate-1", "lock_unlocked"), ("gate-1", "door_opened")]
            assert got[1].data["method"] == "card"
            assert got[2].data["unlocked_by"] == "card"
            assert hub.counts["bad_json"] == 1
            assert hub.counts["availability"] == 1
            assert metrics.registry.get_sample_value("hub_mqtt_messages_total", {"result": "ok"}) == 5
            status = {s["id"]: s for s in hub.status()}
            assert status["door-1"]["status"] == "online"
            assert status["lock-1"]["battery"] == 77.0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def test_callbacks_battery_flag_and_lock_method_hint() -> None:
    events: list[SourceEvent] = []
    rows: list[dict[str, Any]] = []
    strike = DeviceSpec(id="strike", kind="smart_lock", topic="strike", dialect="tasmota", source="src-1")
    door = DeviceSpec(id="door", kind="door_contact", topic="door", dialect="tasmota", lock="strike")
    hub = DeviceHub([strike, door], None, None, on_event=events.append, on_status=rows.append)
    assert [str(e.kind) for e in hub.handle("stat/strike/POWER", b"OFF", now=0)] == []  # first state: locked
    unlocked = hub.handle("stat/strike/POWER", b"ON", now=1)
    assert [(str(e.kind), e.data["method"]) for e in unlocked] == [("lock_unlocked", "remote")]
    opened = hub.handle("tele/door/SENSOR", b'{"Switch1":"ON"}', now=3)
    assert [str(e.kind) for e in opened] == ["door_opened"]
    assert events[-1].data["unlocked_by"] == "remote"
    assert rows[-1]["id"] == "door" and rows[-1]["door"] == "open"
    assert unlocked[0].data["source"] == "src-1"
    # a battery-low flag without a percentage: once, re-armed by a good report
    z = DeviceHub([DOOR], None, None)
    flag = b'{"contact": true, "battery_low": true}'
    assert [str(e.kind) for e in z.handle(DOOR.topic, flag, now=0)] == ["low_battery"]
    assert z.handle(DOOR.topic, flag, now=1) == []
    assert z.handle(DOOR.topic, b'{"battery_low": false, "battery": 95}', now=2) == []
    assert [str(e.kind) for e in z.handle(DOOR.topic, flag, now=3)] == ["low_battery"]


def test_discovered_devices_appear_and_disappear(caplog: Any) -> None:
    rows: list[dict[str, Any]] = []
    hub = DeviceHub([], None, None, dialects=[HomeAssistant()], on_status=rows.append)
    config = {"device_class": "door", "state_topic": "d/1", "device": {"identifiers": ["d1"], "name": "Gate"}}
    hub.handle("homeassistant/binary_sensor/d1/door/config", json.dumps(config).encode(), now=0)
    assert "d/1" in hub.filters() and set(hub.devices) == {"d1"}
    assert hub._filters_changed.is_set()  # run() subscribes the new state topic
    assert [str(e.kind) for e in hub.handle("d/1", b"ON", now=1)] == ["door_opened"]
    hub.handle("homeassistant/binary_sensor/d1/door/config", b"", now=2)
    assert hub.devices == {} and "d/1" not in hub.filters()
    assert rows[-1]["id"] == "d1" and rows[-1]["removed"] is True
    assert hub.handle("d/1", b"ON", now=3) == []
    assert hub.counts == {"discovery": 2, "ok": 1, "unknown_topic": 1}


def test_unknown_devices_counted_and_logged_once(caplog: Any) -> None:
    rule = MappingRule(topic="v/+device/e", fields={"event": "e"})
    hub = DeviceHub([], None, None, dialects=[MappingDialect([rule])])
    for _ in range(3):
        assert hub.handle("v/gate-9/e", b'{"e": "door_open"}', now=0) == []
    assert hub.counts == {"unknown_device": 3}
    logged = [r for r in caplog.records if "gate-9" in r.getMessage()]
    assert len(logged) == 1


async def test_discovered_devices_are_reported_once_their_topics_are_subscribed() -> None:
    """A status row for a discovered device means the broker acknowledged its state topic (SUBACK): a
    non-retained state the device publishes right after is never lost. Before, rows went out at once
    and the subscriptions trailed behind (one round trip each), so most of these states were lost."""
    url = require_mosquitto()
    p = unique("ha-suback")
    n = 200
    rows: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    events: list[SourceEvent] = []
    opened = asyncio.Event()

    def on_event(event: SourceEvent) -> None:
        events.append(event)
        if len(events) == n:
            opened.set()

    async with MqttClient(url, p + "-hub", clean_session=True) as client:
        hub = DeviceHub([], None, client, dialects=[HomeAssistant(prefix=f"{p}/ha")],
                        on_event=on_event, on_status=rows.put_nowait)
        task = asyncio.create_task(hub.run())
        try:
            await asyncio.wait_for(hub.ready.wait(), 5)
            assert await client.wait_online(5)
            async with aiomqtt.Client("127.0.0.1", 1883, identifier=p + "-dev") as dev:
                for i in range(n):
                    config = {"dev_cla": "door", "stat_t": f"{p}/d{i}", "dev": {"ids": [f"{p}-d{i}"]}}
                    await dev.publish(f"{p}/ha/binary_sensor/d{i}/door/config", json.dumps(config))
                reported: set[str] = set()
                async with asyncio.timeout(10):
                    while len(reported) < n:
                        reported.add((await rows.get())["id"])
                for i in range(n):  # every device reported ready: all doors open now, not retained
                    await dev.publish(f"{p}/d{i}", "ON")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(opened.wait(), 5)
            assert len(events) == n, f"{n - len(events)} of {n} non-retained states were lost"
            assert {str(e.kind) for e in events} == {"door_opened"}
            assert len({e.source_id for e in events}) == n
            assert hub.counts["discovery"] == n and hub.counts["ok"] == n
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def test_device_limit_is_counted_as_unknown_device_and_logged_once(caplog: Any) -> None:
    rows: list[dict[str, Any]] = []
    hub = DeviceHub([], None, None, dialects=[HomeAssistant(max_devices=2)], on_status=rows.append)
    for i in range(5):
        config = {"device_class": "door", "state_topic": f"d/{i}", "device": {"identifiers": [f"d{i}"]}}
        hub.handle(f"homeassistant/binary_sensor/d{i}/door/config", json.dumps(config).encode(), now=i)
    assert set(hub.devices) == {"d0", "d1"} and {r["id"] for r in rows} == {"d0", "d1"}
    assert hub.counts == {"discovery": 2, "unknown_device": 3}
    logged = [r for r in caplog.records if "device limit" in r.getMessage()]
    assert len(logged) == 1 and "max_devices" in logged[0].getMessage()
    # mapping auto_devices share the limit
    rule = MappingRule(topic="v/+device/e", fields={"event": "e"}, auto_devices=True)
    auto = DeviceHub([], None, None, dialects=[MappingDialect([rule], max_devices=2)])
    for i in range(4):
        auto.handle(f"v/gate-{i}/e", b'{"e": "door_open"}', now=0)
    assert set(auto.devices) == {"gate-0", "gate-1"}
    assert auto.counts == {"ok": 2, "unknown_device": 2}


def test_door_lock_rules_stand_alone() -> None:
    """The state machine needs no hub: a door opening while its lock reports locked is forced."""
    lock = DeviceState(DeviceSpec(id="lock", kind="smart_lock"))
    door = DeviceState(DeviceSpec(id="door", kind="door_contact", lock="lock", cameras=("cam-1",)))
    rules = DoorLockRules({"lock": lock, "door": door}, held_open_s=30, forced_window_s=10)
    assert rules.apply(lock, Reading(locked=True), 0) == []
    assert rules.apply(door, Reading(door_open=False), 1) == []
    forced = rules.apply(door, Reading(door_open=True), 100)
    assert [(e.kind, e.data["reason"], e.data["cameras"]) for e in forced] == \
        [(EventKind.DOOR_FORCED, "opened_while_locked", ["cam-1"])]
    assert [e.kind for e in rules.timers(door, 131, started=0)] == [EventKind.DOOR_HELD_OPEN]
    assert door.status()["last_event"] == "door_held_open"
