"""Payload decoders and dialects: Zigbee2MQTT, JSON, Tasmota, Home Assistant discovery, mappings.

Garbage (hypothesis) goes through every decoder in test_dialects_garbage.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.dialects import (
    MISSING,
    Decoded,
    DeviceSpec,
    PayloadError,
    Reading,
    decode_availability,
    get_path,
    json_events,
    parse_json_object,
    parse_path,
    topic_matches,
    zigbee2mqtt,
)
from adapters.dialects.homeassistant import MAX_ENTITIES, HomeAssistant
from adapters.dialects.mapping import MappingDialect, MappingRule
from adapters.dialects.tasmota import Tasmota


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


def test_zigbee2mqtt_battery_low_flag() -> None:
    assert z2m({"contact": True, "battery_low": True}, "door_contact").battery_low is True
    with pytest.raises(PayloadError):
        z2m({"battery_low": "yes"}, "door_contact")


# ---------------------------------------------------------------- Tasmota
DOOR_T = DeviceSpec(id="door-t", kind="door_contact", topic="tasmota_door", dialect="tasmota")
LOCK_T = DeviceSpec(id="lock-t", kind="smart_lock", topic="tasmota_lock", dialect="tasmota")


def one(decoded: list[Decoded] | None) -> Decoded:
    assert decoded is not None and len(decoded) == 1, decoded
    return decoded[0]


def rd(decoded: list[Decoded] | None) -> Reading:
    reading = one(decoded).reading
    assert reading is not None
    return reading


def test_tasmota_routes_and_decodes() -> None:
    t = Tasmota([DOOR_T, LOCK_T])
    assert sorted(t.filters()) == ["stat/tasmota_door/+", "stat/tasmota_lock/+", "tele/tasmota_door/+",
                                   "tele/tasmota_lock/+"]
    lwt = one(t.decode("tele/tasmota_door/LWT", b"Offline"))
    assert (lwt.device, lwt.reading, lwt.result) == ("door-t", Reading(available=False), "availability")
    assert one(t.decode("tele/tasmota_door/LWT", b"Online")).reading == Reading(available=True)
    sensor = rd(t.decode("tele/tasmota_door/SENSOR",
                         b'{"Time":"2024-06-10T22:14:03","Switch1":"ON","Battery":87}'))
    assert (sensor.door_open, sensor.battery) == (True, 87.0)
    assert rd(t.decode("tele/tasmota_door/SENSOR", b'{"Switch1":"OFF"}')).door_open is False
    # a door field one level down, in a sensor object, and a tamper contact
    nested = rd(t.decode("tele/tasmota_door/SENSOR",
                         b'{"DS":{"Door":"Open","BatteryPercentage":15,"Tamper":"ON"}}'))
    assert (nested.door_open, nested.battery, nested.tamper) == (True, 15.0, True)
    result = rd(t.decode("stat/tasmota_door/RESULT", b'{"Switch1":{"Action":"ON"}}'))
    assert result.door_open is True
    # a relay on a door contact is just a relay; on a lock it drives the strike (ON = unlocked)
    assert one(t.decode("stat/tasmota_door/POWER", b"ON")).reading == Reading()
    unlocked = rd(t.decode("stat/tasmota_lock/POWER", b"ON"))
    assert (unlocked.locked, unlocked.method) == (False, "remote")
    assert rd(t.decode("stat/tasmota_lock/RESULT", b'{"POWER":"OFF"}')).locked is True
    assert rd(t.decode("tele/tasmota_lock/STATE", b'{"POWER1":"ON","Wifi":{"RSSI":60}}')).locked \
        is False
    assert one(t.decode("tele/tasmota_lock/INFO1", b'{"Module":"Generic"}')).reading == Reading()
    assert t.decode("tele/other/SENSOR", b"{}") is None
    assert t.decode("cmnd/tasmota_door/POWER", b"ON") is None


def test_tasmota_options_and_errors() -> None:
    t = Tasmota([DOOR_T], full_topic="village/%topic%/%prefix%/", door_switch="Switch2", open_state="OFF")
    assert "village/tasmota_door/tele/+" in t.filters()
    assert rd(t.decode("village/tasmota_door/tele/SENSOR", b'{"Switch2":"OFF"}')).door_open is True
    for topic, payload in [("village/tasmota_door/tele/LWT", b"maybe"),
                           ("village/tasmota_door/tele/SENSOR", b'{"Switch2": 3}'),
                           ("village/tasmota_door/tele/SENSOR", b'{"Door": "ajar"}'),
                           ("village/tasmota_door/tele/SENSOR", b'{"Battery": 300}'),
                           ("village/tasmota_door/stat/POWER", b"\xff"),
                           ("village/tasmota_door/tele/SENSOR", b"[]")]:
        with pytest.raises(PayloadError) as exc:
            t.decode(topic, payload)
        assert exc.value.device == "door-t"
    with pytest.raises(ValueError, match="%prefix%"):
        Tasmota([DOOR_T], full_topic="%topic%/")


# ---------------------------------------------------------------- Home Assistant discovery
Z2M_DEVICE = {"identifiers": ["zigbee2mqtt_0x00158d0001"], "name": "3号楼单元门", "manufacturer": "Aqara",
              "model": "MCCGQ11LM"}
CONTACT = {"device_class": "door", "state_topic": "zigbee2mqtt/front", "unique_id": "0x1_contact",
           "value_template": "{{ value_json.contact }}", "payload_on": False, "payload_off": True,
           "availability": [{"topic": "zigbee2mqtt/bridge/state",
                             "value_template": "{{ value_json.state }}"}],
           "device": Z2M_DEVICE}


def cfg(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def test_homeassistant_discovery_contact_lock_and_removal() -> None:
    ha = HomeAssistant(prefix="homeassistant")
    assert ha.filters() == ["homeassistant/+/+/config", "homeassistant/+/+/+/config"]
    made = one(ha.decode("homeassistant/binary_sensor/0x1/contact/config", cfg(CONTACT)))
    assert made.result == "discovery" and made.spec is not None
    assert (made.spec.id, made.spec.kind, made.spec.name) == ("zigbee2mqtt_0x00158d0001", "door_contact",
                                                              "3号楼单元门")
    assert made.spec.extra == {"manufacturer": "Aqara", "model": "MCCGQ11LM"}
    assert {"zigbee2mqtt/front", "zigbee2mqtt/bridge/state"} <= set(ha.filters())
    # the same retained config again changes nothing
    assert one(ha.decode("homeassistant/binary_sensor/0x1/contact/config", cfg(CONTACT))).spec is None
    assert one(ha.decode("zigbee2mqtt/front", b'{"contact": false, "battery": 50}')).reading == \
        Reading(door_open=True)
    assert ha.decode("zigbee2mqtt/front", b'{"battery": 50}') == []  # no contact key: nothing said
    up = one(ha.decode("zigbee2mqtt/bridge/state", b'{"state": "offline"}'))
    assert (up.reading, up.result) == (Reading(available=False), "availability")
    # a lock entity with abbreviations and a ~ base topic joins the device and makes it a smart lock
    lock = {"~": "locks/l1", "stat_t": "~/state", "dev": {"ids": "zigbee2mqtt_0x00158d0001"},
            "val_tpl": "{{ value_json.state }}", "stat_locked": "LOCK", "stat_unlocked": "UNLOCK",
            "stat_jam": "JAM", "avty_t": "~/availability", "pl_avail": "up", "pl_not_avail": "down"}
    joined = one(ha.decode("homeassistant/lock/l1/config", cfg(lock)))
    assert joined.spec is not None and joined.spec.kind == "smart_lock"
    assert joined.spec.name == "3号楼单元门"  # a later entity without a device name keeps it
    assert one(ha.decode("locks/l1/state", b'{"state": "LOCK"}')).reading == Reading(locked=True)
    assert one(ha.decode("locks/l1/state", b'{"state": "UNLOCK"}')).reading == Reading(locked=False)
    assert rd(ha.decode("locks/l1/state", b'{"state": "JAM"}')).tamper is True
    assert one(ha.decode("locks/l1/availability", b"down")).reading == Reading(available=False)
    # empty retained configs remove entities, then the device
    gone = one(ha.decode("homeassistant/lock/l1/config", b""))
    assert gone.spec is not None and gone.spec.kind == "door_contact" and not gone.removed
    assert ha.decode("locks/l1/state", b'{"state": "LOCK"}') is None
    removed = one(ha.decode("homeassistant/binary_sensor/0x1/contact/config", b""))
    assert (removed.device, removed.removed) == ("zigbee2mqtt_0x00158d0001", True)
    assert ha.filters() == ["homeassistant/+/+/config", "homeassistant/+/+/+/config"]


@pytest.mark.parametrize(("config", "payload", "expected"), [
    ({"device_class": "tamper"}, b"ON", Reading(tamper=True)),
    ({"device_class": "battery"}, b"ON", Reading(battery_low=True)),
    ({"device_class": "lock"}, b"ON", Reading(locked=False)),  # HA: lock class ON = unlocked
    ({"device_class": "window", "payload_on": "open", "payload_off": "closed"}, b"closed",
     Reading(door_open=False)),
    ({"device_class": "connectivity"}, b"OFF", Reading(available=False)),
])
def test_homeassistant_binary_sensors(config: dict[str, Any], payload: bytes, expected: Reading) -> None:
    ha = HomeAssistant()
    one(ha.decode("homeassistant/binary_sensor/dev9/x/config",
                  cfg({**config, "state_topic": "dev9/x", "unique_id": "dev9_x"})))
    assert one(ha.decode("dev9/x", payload)).reading == expected


def test_homeassistant_battery_sensor_events_and_unsupported() -> None:
    ha = HomeAssistant()
    one(ha.decode("homeassistant/sensor/d1/battery/config",
                  cfg({"device_class": "battery", "stat_t": "d1/state",
                       "val_tpl": "{{ value_json.bat.level }}", "dev": {"ids": ["d1"]}})))
    assert one(ha.decode("d1/state", b'{"bat": {"level": 12}}')).reading == Reading(battery=12.0)
    one(ha.decode("homeassistant/event/d1/action/config",
                  cfg({"state_topic": "d1/action", "event_types": ["fingerprint_unlock"],
                       "dev": {"ids": "d1"}})))
    unlock = rd(ha.decode("d1/action", b'{"event_type": "fingerprint_unlock"}'))
    assert (unlock.unlocked_by, unlock.locked) == ("fingerprint", False)
    unlock = rd(ha.decode("d1/action", b'{"event_type": "unlock", "method": "keypad"}'))
    assert unlock.unlocked_by == "password"
    assert rd(ha.decode("d1/action", b'{"event_type": "unlock_failure_invalid_pin"}')).failed_attempt
    # unsupported components, device classes and templates
    assert ha.decode("homeassistant/light/d1/l/config", cfg({"state_topic": "d1/l"})) == \
        [Decoded("", result="ignored")]
    assert one(ha.decode("homeassistant/sensor/d1/t/config",
                         cfg({"device_class": "temperature", "state_topic": "d1/t"}))).result == "ignored"
    with pytest.raises(PayloadError, match="not supported"):
        ha.decode("homeassistant/binary_sensor/d1/door/config",
                  cfg({"device_class": "door", "state_topic": "d1/door",
                       "value_template": "{{ value_json.contact | int }}"}))
    with pytest.raises(PayloadError, match="state_topic"):
        ha.decode("homeassistant/binary_sensor/d1/door/config", cfg({"device_class": "door"}))
    with pytest.raises(PayloadError, match="must be a number"):
        ha.decode("d1/state", b'{"bat": {"level": "x"}}')
    one(ha.decode("homeassistant/binary_sensor/d1/door/config",
                  cfg({"device_class": "door", "state_topic": "d1/door", "dev": {"ids": "d1"}})))
    with pytest.raises(PayloadError, match="neither") as exc:
        ha.decode("d1/door", b"AJAR")
    assert exc.value.device == "d1"


def test_homeassistant_device_discovery_and_configured_devices() -> None:
    configured = DeviceSpec(id="gate-3", kind="smart_lock", topic="acme-gate-3", grid="440105001002",
                            cameras=("cam-3",), dialect="homeassistant")
    ha = HomeAssistant([configured], accept="configured")
    device_cfg = {"dev": {"ids": ["acme-gate-3"], "name": "Gate"}, "o": {"name": "acme"},
                  "stat_t": "acme/gate3/state",
                  "cmps": {"door": {"p": "binary_sensor", "dev_cla": "door",
                                    "val_tpl": "{{ value_json.door }}"},
                           "lock": {"p": "lock", "val_tpl": "{{ value_json['lock'] }}"},
                           "cam": {"p": "camera", "t": "acme/gate3/jpg"}}}
    made = one(ha.decode("homeassistant/device/gate3/config", cfg(device_cfg)))
    assert made.spec is not None
    assert (made.spec.id, made.spec.grid, made.spec.cameras, made.spec.kind) == \
        ("gate-3", "440105001002", ("cam-3",), "smart_lock")
    both = ha.decode("acme/gate3/state", b'{"door": "ON", "lock": "UNLOCKED"}')
    assert [d.reading for d in both or []] == [Reading(door_open=True), Reading(locked=False)]
    # not configured: ignored in "configured" mode
    assert ha.decode("homeassistant/binary_sensor/x/door/config",
                     cfg({"device_class": "door", "state_topic": "x/door", "dev": {"ids": "stranger"}})) == \
        [Decoded("", result="ignored")]
    removed = one(ha.decode("homeassistant/device/gate3/config", b""))
    assert removed.removed


# ---------------------------------------------------------------- declarative mapping
VILLAGE = [
    MappingRule(
        topic="village/+device/event",
        fields={"event": "data.type", "method": "data.method", "ts": "data.time",
                "battery": "status.battery"},
        values={"event": {"1": "door_opened", "2": "door_closed", "3": "door_forced", "4": "lock_unlocked",
                          "5": "unlock_failed", "9": "ignore"},
                "method": {"1": "fingerprint", "2": "password", "3": "card", "4": "remote", "5": "key"}}),
    MappingRule(topic="village/+device/lwt", payload="text", fields={"online": "$"},
                values={"online": {"up": True, "down": False}}),
    MappingRule(topic="estate/#rest", fields={"device": "devices[0].sn", "event": "devices[0].evt"},
                values={"device": {"SN-77": "gate-77"}}, auto_devices=True, kind="smart_lock"),
]
GATE_M = DeviceSpec(id="gate-1", kind="smart_lock", topic="", dialect="mapping", grid="g1")


def test_mapping_rules() -> None:
    m = MappingDialect(VILLAGE, [GATE_M])
    assert m.filters() == ["village/+/event", "village/+/lwt", "estate/#"]
    r = one(m.decode("village/gate-1/event", cfg({"data": {"type": 4, "method": "1", "time": 1718000000000},
                                                   "status": {"battery": "15"}})))
    assert r.device == "gate-1" and r.reading is not None
    assert (r.reading.unlocked_by, r.reading.locked, r.reading.battery, r.reading.device_ts) == \
        ("fingerprint", False, 15.0, 1718000000.0)
    assert rd(m.decode("village/gate-1/event", cfg({"data": {"type": "3"}}))).forced is True
    assert one(m.decode("village/gate-1/event", cfg({"data": {"type": 9}}))).result == "ignored"
    assert one(m.decode("village/gate-1/lwt", b"DOWN")).reading == Reading(available=False)
    created = one(m.decode("estate/a/b", cfg({"devices": [{"sn": "SN-77", "evt": "door_open"}]})))
    assert created.spec is not None and (created.spec.id, created.spec.kind) == ("gate-77", "smart_lock")
    assert created.reading == Reading(door_open=True, action="door_open")
    assert one(m.decode("estate/a/b", cfg({"devices": [{"sn": "SN-77", "evt": "lock"}]}))).spec is None
    assert m.decode("village/gate-1/status", b"{}") is None
    with pytest.raises(PayloadError) as exc:
        m.decode("village/gate-2/event", cfg({"data": {"type": 1}}))
    assert exc.value.result == "unknown_device"
    with pytest.raises(PayloadError, match="not mapped") as exc:
        m.decode("village/gate-1/event", cfg({"data": {"type": 42}}))
    assert exc.value.device == "gate-1"
    for bad in (b"not json", cfg({"status": {"battery": "lots"}}), cfg({"data": {"type": [1]}})):
        with pytest.raises(PayloadError):
            m.decode("village/gate-1/event", bad)


@pytest.mark.parametrize(("rule", "message"), [
    ({"topic": "village/+/event"}, "device id"),
    ({"topic": "village/#rest/event", "fields": {"device": "id"}}, "last level"),
    ({"topic": "village/+device/ev+nt"}, "bad topic level"),
    ({"topic": "village/+device/event", "fields": {"event": "a..b"}}, "bad field path"),
    ({"topic": "village/+device/event", "fields": {"event": "topic:kind"}}, "names no capture"),
    ({"topic": "village/+device/event", "fields": {"colour": "c"}}, "colour"),
])
def test_mapping_rule_validation(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MappingRule.model_validate(rule)


def test_paths_and_topics() -> None:
    assert parse_path("data.events[0].type") == ("data", "events", 0, "type")
    assert parse_path("data.events.0['a b']") == ("data", "events", 0, "a b")
    obj = {"data": {"events": [{"type": "x"}]}}
    assert get_path(obj, parse_path("data.events[0].type")) == "x"
    assert get_path(obj, parse_path("data.events[3].type")) is MISSING
    assert get_path(obj, parse_path("data.events.type")) is MISSING
    assert topic_matches("a/+/c", "a/b/c")
    assert topic_matches("a/#", "a/b/c")
    assert not topic_matches("a/+", "a/b/c")


def test_homeassistant_node_and_object_ids_do_not_shadow_each_other() -> None:
    ha = HomeAssistant()
    door = {"device_class": "door", "state_topic": "n/door", "dev": {"ids": "n1"}}
    tamper = {"device_class": "tamper", "state_topic": "n/tamper", "dev": {"ids": "n1"}}
    one(ha.decode("homeassistant/binary_sensor/n1/config", cfg(door)))  # <component>/<object_id>
    one(ha.decode("homeassistant/binary_sensor/n1/tamper/config", cfg(tamper)))  # .../<node_id>/<object_id>
    one(ha.decode("homeassistant/binary_sensor/n1/config", b""))
    assert ha.decode("n/door", b"ON") is None
    assert rd(ha.decode("n/tamper", b"ON")) == Reading(tamper=True)


# ---------------------------------------------------------------- bounded, incremental discovery
def test_homeassistant_discovers_thousands_of_entities_quickly() -> None:
    """Each config touches only its own entities: 4,000 entities (2,000 doors with a lock each) and
    1,000 ignored configs in well under 3 s (it was quadratic: ~14 s here), then they all route."""
    ha = HomeAssistant()
    started = time.perf_counter()
    for i in range(2000):
        dev = {"ids": [f"dev{i}"]}
        door = {"dev_cla": "door", "stat_t": f"d/{i}/door", "avty_t": f"d/{i}/avail", "dev": dev}
        one(ha.decode(f"homeassistant/binary_sensor/dev{i}/door/config", cfg(door)))
        one(ha.decode(f"homeassistant/lock/dev{i}/lock/config", cfg({"stat_t": f"d/{i}/lock", "dev": dev})))
        if i % 2:
            assert ha.decode(f"homeassistant/light/dev{i}/l/config", cfg({"stat_t": f"d/{i}/light"})) == \
                [Decoded("", result="ignored")]
    took = time.perf_counter() - started
    assert took < 3.0, f"discovering 4,000 entities took {took:.1f} s"
    assert len(ha.entities) == 4000 and len(ha.specs) == 2000
    assert all(spec.kind == "smart_lock" for spec in ha.specs.values())
    assert len(ha.filters()) == 2 + 3 * 2000
    assert rd(ha.decode("d/1999/lock", b"UNLOCKED")) == Reading(locked=False)
    assert one(ha.decode("d/7/avail", b"offline")).reading == Reading(available=False)
    # removing a lock entity touches only its device; removing the door removes the device and its topics
    gone = one(ha.decode("homeassistant/lock/dev7/lock/config", b""))
    assert gone.spec is not None and gone.spec.kind == "door_contact"
    assert one(ha.decode("homeassistant/binary_sensor/dev7/door/config", b"")).removed
    assert ha.decode("d/7/door", b"ON") is None and "d/7/avail" not in ha.filters()
    assert len(ha.specs) == 1999 and len(ha.filters()) == 2 + 3 * 1999


def test_homeassistant_device_limit() -> None:
    configured = DeviceSpec(id="gate-3", kind="door_contact", topic="acme-gate-3", dialect="homeassistant")
    ha = HomeAssistant([configured], max_devices=2)

    def door(ident: str) -> bytes:
        return cfg({"dev_cla": "door", "stat_t": f"{ident}/door", "dev": {"ids": ident}})

    one(ha.decode("homeassistant/binary_sensor/d1/door/config", door("d1")))
    one(ha.decode("homeassistant/binary_sensor/d2/door/config", door("d2")))
    for ident in ("d3", "d4"):
        with pytest.raises(PayloadError, match="device limit") as exc:
            ha.decode(f"homeassistant/binary_sensor/{ident}/door/config", door(ident))
        assert exc.value.result == "unknown_device" and exc.value.log_key is not None
    assert set(ha.specs) == {"d1", "d2"} and "d3/door" not in ha.filters()
    # known devices still get new entities; configured devices are always accepted
    tamper = cfg({"dev_cla": "tamper", "stat_t": "d1/tamper", "dev": {"ids": "d1"}})
    assert one(ha.decode("homeassistant/binary_sensor/d1/tamper/config", tamper)).result == "discovery"
    one(ha.decode("homeassistant/binary_sensor/gate/door/config", door("acme-gate-3")))
    assert set(ha.specs) == {"d1", "d2", "gate-3"}
    # a removed device frees its slot
    assert one(ha.decode("homeassistant/binary_sensor/d2/door/config", b"")).removed
    one(ha.decode("homeassistant/binary_sensor/gate/door/config", b""))
    one(ha.decode("homeassistant/binary_sensor/d3/door/config", door("d3")))
    assert set(ha.specs) == {"d1", "d3"}
    # and one device cannot grow without bound either
    for n in range(MAX_ENTITIES - 2):
        one(ha.decode(f"homeassistant/binary_sensor/d1/t{n}/config",
                      cfg({"dev_cla": "tamper", "stat_t": f"d1/t{n}", "dev": {"ids": "d1"}})))
    with pytest.raises(PayloadError, match="more than") as exc:
        ha.decode("homeassistant/binary_sensor/d1/one-more/config",
                  cfg({"dev_cla": "tamper", "stat_t": "d1/more", "dev": {"ids": "d1"}}))
    assert exc.value.device == "d1" and "d1/more" not in ha.filters()


def test_mapping_auto_devices_stop_at_the_device_limit() -> None:
    rule = MappingRule(topic="estate/+device", fields={"event": "evt"}, auto_devices=True)
    m = MappingDialect([rule], [GATE_M], max_devices=3)
    for device in ("gate-1", "gate-2", "gate-3"):
        one(m.decode(f"estate/{device}", cfg({"evt": "door_open"})))
    with pytest.raises(PayloadError, match="device limit") as exc:
        m.decode("estate/gate-4", cfg({"evt": "door_open"}))
    assert exc.value.result == "unknown_device" and exc.value.log_key is not None
    assert set(m.known) == {"gate-1", "gate-2", "gate-3"}
    assert one(m.decode("estate/gate-2", cfg({"evt": "door_close"}))).reading == \
        Reading(door_open=False, action="door_close")
