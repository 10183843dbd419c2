"""Payload decoders for every dialect, and garbage never crashing or stalling DeviceHub."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.dialects import (
    PayloadError,
    Reading,
    decode_availability,
    json_events,
    parse_json_object,
    zigbee2mqtt,
)
from adapters.mqtt_client import MqttClient
from adapters.mqtt_devices import DeviceHub
from hub.bus import Bus
from hub.config import DeviceConfig
from hub.events import SourceEvent


def z2m(obj: dict[str, Any], kind: str = "smart_lock") -> Reading:
    return zigbee2mqtt.decode(obj, kind)  # type: ignore[arg-type]


def js(obj: dict[str, Any], kind: str = "door_contact") -> Reading:
    return json_events.decode(obj, kind)  # type: ignore[arg-type]


def test_zigbee2mqtt_contact() -> None:
    r = z2m({"contact": False, "battery": 87, "tamper": False, "linkquality": 120, "voltage": 3000},
            "door_contact")
    assert (r.door_open, r.battery, r.tamper, r.locked) == (True, 87.0, False, None)
    assert z2m({"contact": True}, "door_contact").door_open is False
    # a contact sensor's "state" is not a lock state
    assert z2m({"contact": True, "state": "LOCK"}, "door_contact").locked is None


@pytest.mark.parametrize(("payload", "expected"), [
    ({"state": "LOCK", "lock_state": "locked"}, {"locked": True}),
    ({"state": "UNLOCK"}, {"locked": False}),
    ({"lock_state": "not_fully_locked"}, {"locked": False}),
    ({"action": "unlock", "action_source_name": "keypad", "lock_state": "unlocked"},
     {"unlocked_by": "password", "locked": False, "action": "unlock"}),
    ({"action": "unlock", "action_source_name": "rfid"}, {"unlocked_by": "card", "locked": False}),
    ({"action": "fingerprint_unlock"}, {"unlocked_by": "fingerprint", "locked": False}),
    ({"action": "key_unlock", "action_source_name": "manual"}, {"unlocked_by": "manual"}),
    ({"action": "unlock", "action_source_name": "rf"}, {"unlocked_by": "remote"}),
    # the event arrives before the lock_state report: the unlock counts, the stale state stays
    ({"action": "unlock", "action_source_name": "keypad", "lock_state": "locked"},
     {"unlocked_by": "password", "locked": True}),
    ({"action": "unlock_failure_invalid_pin_or_id", "action_source_name": "keypad"},
     {"failed_attempt": True, "failed_limit": False, "unlocked_by": None}),
    ({"action": "lock_failure_invalid_schedule"}, {"failed_attempt": True}),
    ({"action": "tamper_alarm_wrong_code_entry_limit"}, {"failed_limit": True, "failed_attempt": True}),
    ({"action": "forced_door_open_under_door_locked_condition"}, {"forced": True, "unlocked_by": None}),
    ({"action": "door_forced"}, {"forced": True}),
    ({"action": "tamper_alarm_front_escutcheon_removed"}, {"tamper": True}),
    ({"action": "auto_lock", "state": "LOCK"}, {"locked": True}),
    ({"action": "", "lock_state": "locked"}, {"locked": True, "action": None}),
    ({"door_state": "open", "lock_state": "locked"}, {"door_open": True, "locked": True}),
    ({"availability": "offline"}, {"available": False}),
])
def test_zigbee2mqtt_lock(payload: dict[str, Any], expected: dict[str, Any]) -> None:
    r = z2m(payload)
    for key, value in expected.items():
        assert getattr(r, key) == value, (payload, key)


@pytest.mark.parametrize("payload", [
    {"contact": "open"}, {"battery": "87"}, {"battery": 180}, {"battery": True}, {"tamper": 1},
    {"lock_state": 3}, {"action": ["unlock"]},
])
def test_zigbee2mqtt_wrong_types(payload: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        z2m(payload)


@pytest.mark.parametrize(("payload", "expected"), [
    ({"event": "door_open", "ts": 1718000000}, {"door_open": True, "device_ts": 1718000000.0}),
    ({"event": "door_close", "ts": 1718000000123}, {"door_open": False, "device_ts": 1718000000.123}),
    ({"event": "forced"}, {"forced": True}),
    ({"event": "unlock", "method": "fingerprint"}, {"unlocked_by": "fingerprint", "locked": False}),
    ({"event": "unlock", "method": "IC card"}, {"unlocked_by": "card"}),
    ({"event": "fail", "method": "password"}, {"failed_attempt": True}),
    ({"event": "fail_limit"}, {"failed_limit": True}),
    ({"event": "lock"}, {"locked": True}),
    ({"event": "held_open"}, {"held_open": True}),
    ({"event": "tamper"}, {"tamper": True}),
    ({"event": "offline"}, {"available": False}),
    ({"event": "battery", "battery": 15}, {"battery": 15.0}),
    ({"device": "gate-3", "event": {"type": "unlock", "method": "face", "ts": "2024-06-10T22:14:03+08:00"}},
     {"unlocked_by": "face", "device_ts": 1718028843.0}),
    ({"data": {"event": "DOOR_OPEN", "battery": 50}}, {"door_open": True, "battery": 50.0}),
    ({"door": "open", "locked": True}, {"door_open": True, "locked": True}),
])
def test_json_dialect(payload: dict[str, Any], expected: dict[str, Any]) -> None:
    r = js(payload)
    for key, value in expected.items():
        assert getattr(r, key) == value, (payload, key)


@pytest.mark.parametrize("payload", [
    {"event": "teleported"}, {"event": 3}, {"event": "door_open", "ts": "yesterday"},
    {"event": "door_open", "ts": "2024-06-10T22:14:03"}, {"event": "door_open", "ts": True},
    {"event": "door_open", "ts": -5}, {"hello": "world"}, {"event": "unlock", "method": 5},
])
def test_json_dialect_rejects(payload: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        js(payload)


def test_availability_and_envelope() -> None:
    assert decode_availability(b"online") is True
    assert decode_availability(b'{"state":"offline"}') is False
    for bad in (b"maybe", b'{"state": 1}', b"\xff\xfe", b"[]"):
        with pytest.raises(PayloadError):
            decode_availability(bad)
    with pytest.raises(PayloadError) as exc:
        parse_json_object(b"{" * 10 + b"x" * 70_000)
    assert exc.value.result == "too_large"
    with pytest.raises(PayloadError) as exc:
        parse_json_object(b"not json")
    assert exc.value.result == "bad_json"
    with pytest.raises(PayloadError) as exc:
        parse_json_object(b"[1, 2]")
    assert exc.value.result == "bad_payload"


# ---------------------------------------------------------------- property tests through DeviceHub.handle
DEVICES = [
    DeviceConfig(id="lock-z", kind="smart_lock", topic="p/lock-z", dialect="zigbee2mqtt", grid="g1"),
    DeviceConfig(id="door-z", kind="door_contact", topic="p/door-z", dialect="zigbee2mqtt", lock="lock-z"),
    DeviceConfig(id="lock-j", kind="smart_lock", topic="p/lock-j", dialect="json"),
    DeviceConfig(id="door-j", kind="door_contact", topic="p/door-j", dialect="json", lock="lock-j"),
]
TOPICS = [d.topic for d in DEVICES] + [d.topic + "/availability" for d in DEVICES] + ["p/unknown"]
KEYS = ["contact", "battery", "tamper", "state", "lock_state", "action", "action_source_name", "door_state",
        "event", "method", "ts", "door", "locked", "data", "type", "availability", "linkquality"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["unlock", "door_open", "forced", "LOCK", "locked", "online", "fail", "keypad"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KEYS), children,
                                                                       max_size=4),
    max_leaves=10,
)
json_objects = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), json_values, max_size=8)


def make_hub() -> tuple[DeviceHub, Bus]:
    bus = Bus()
    # never started: handle() is the decoding path the MQTT consumer calls for each message
    return DeviceHub(DEVICES, bus, MqttClient(None, "unused")), bus


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(TOPICS), st.binary(max_size=200) | json_objects.map(
    lambda o: json.dumps(o).encode())), min_size=1, max_size=20))
def test_garbage_never_raises_and_is_counted(messages: list[tuple[str, bytes]]) -> None:
    hub, bus = make_hub()
    sub = bus.subscribe("source_event")
    for i, (topic, payload) in enumerate(messages):
        events = hub.handle(topic, payload, now=1000.0 + i)
        assert all(isinstance(e, SourceEvent) for e in events)
    assert sum(hub.counts.values()) == len(messages)  # every message is accounted for exactly once
    assert set(hub.counts) <= {"ok", "availability", "bad_json", "bad_payload", "too_large", "unknown_topic"}
    # the stream is not stalled: a good message after the garbage still decodes
    hub.handle("p/door-z", b'{"contact": true}', now=5000.0)
    hub.handle("p/door-z", b'{"contact": false}', now=5001.0)
    assert hub.devices["door-z"].door_open is True
    assert sub.queue.qsize() >= 1
