"""Garbage through every decoder and every dialect, and through DeviceHub.handle (hypothesis).

Properties: decoders and dialects raise nothing but PayloadError; DeviceHub.handle never raises, counts
every message exactly once under a known label (never "error", which would be a decoder bug), and keeps
decoding good messages after any amount of garbage.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.dialects import (
    MAX_PAYLOAD_BYTES,
    Decoded,
    DeviceSpec,
    Dialect,
    PayloadError,
    Reading,
    TopicDialect,
    decode_availability,
    json_events,
    parse_json_object,
    zigbee2mqtt,
)
from adapters.dialects.homeassistant import HomeAssistant
from adapters.dialects.mapping import MappingDialect, MappingRule
from adapters.dialects.tasmota import Tasmota
from adapters.mqtt_devices import DeviceHub
from hub.config import DeviceConfig
from hub.events import SourceEvent

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LABELS = {"ok", "availability", "discovery", "ignored", "bad_json", "bad_payload", "too_large",
          "unknown_topic", "unknown_device"}

# ---------------------------------------------------------------- strategies
KEYS = ["contact", "battery", "battery_low", "tamper", "state", "lock_state", "action", "action_source_name",
        "door_state", "event", "method", "ts", "door", "locked", "data", "type", "availability",
        "linkquality", "Switch1", "Door", "Contact", "Tamper", "Battery", "BatteryPercentage", "POWER",
        "POWER1", "DS", "device", "devices", "sn", "evt", "status", "time", "event_type",
        # Home Assistant discovery keys (long and abbreviated)
        "device_class", "dev_cla", "state_topic", "stat_t", "value_template", "val_tpl", "availability_topic",
        "avty_t", "avty", "topic", "t", "payload_on", "pl_on", "payload_off", "payload_available",
        "pl_not_avail", "dev", "ids", "identifiers", "name", "unique_id", "uniq_id", "~", "cmps", "p",
        "state_locked", "stat_jam", "payload_lock"]
WORDS = ["unlock", "door_open", "forced", "LOCK", "UNLOCK", "LOCKED", "locked", "online", "offline", "fail",
         "keypad", "ON", "OFF", "Open", "Closed", "door", "tamper", "battery", "lock", "binary_sensor",
         "s/1", "s/2", "avail", "~/x", "{{ value_json.state }}", "{{ value_json.a[0] }}", "{{ value }}",
         "{{ value_json.x | int }}", "fingerprint_unlock", "1", "4", "gate-1", "SN-1", "2024-06-10T22:14:03Z"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
           | st.sampled_from(WORDS))
json_trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
json_objects = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), json_trees, max_size=8)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN/Infinity included: json.loads accepts them


plausible = st.dictionaries(  # right keys, often right values: exercises the state machine too
    st.sampled_from(KEYS), st.sampled_from(WORDS) | st.booleans() | st.integers(-5, 105), max_size=4)
payloads = st.one_of(
    plausible.map(dumps),
    plausible.map(dumps),
    st.binary(max_size=300),
    json_trees.map(dumps),
    json_objects.map(dumps),
    st.sampled_from(WORDS).map(str.encode),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.just(b'{"contact": "' + b"x" * (MAX_PAYLOAD_BYTES + 10) + b'"}'),  # huge
    st.just(b'{"battery": 1' + b"0" * 5000 + b"}"),  # an int too long to convert
)

# ---------------------------------------------------------------- devices under test
Z2M = [DeviceSpec(id="lock-z", kind="smart_lock", topic="z/lock-z"),
       DeviceSpec(id="door-z", kind="door_contact", topic="z/door-z", lock="lock-z")]
JSON = [DeviceSpec(id="lock-j", kind="smart_lock", topic="j/lock-j", dialect="json"),
        DeviceSpec(id="door-j", kind="door_contact", topic="j/door-j", dialect="json", lock="lock-j")]
TASMOTA = [DeviceSpec(id="door-t", kind="door_contact", topic="door_t", dialect="tasmota"),
           DeviceSpec(id="lock-t", kind="smart_lock", topic="lock_t", dialect="tasmota")]
RULES = [
    MappingRule(topic="village/+device/event",
                fields={"event": "data.type", "method": "data.method", "ts": "time", "battery": "battery",
                        "door": "door", "tamper": "tamper"},
                values={"event": {"1": "door_opened", "3": "door_forced", "4": "lock_unlocked",
                                  "9": "ignore"},
                        "method": {"1": "fingerprint"}}),
    MappingRule(topic="village/+device/lwt", payload="text", fields={"online": "$"}),
    MappingRule(topic="estate/#rest", fields={"device": "devices[0].sn", "event": "devices[0].evt"},
                auto_devices=True),
]
MAPPED = [DeviceSpec(id="gate-1", kind="smart_lock", dialect="mapping")]
HA_CONTACT = {"device_class": "door", "state_topic": "s/1", "value_template": "{{ value_json.contact }}",
              "payload_on": False, "payload_off": True, "avty_t": "avail", "dev": {"ids": "d1"}}
HA_LOCK = {"stat_t": "s/2", "dev": {"ids": "d1"}}


def dialects() -> list[Dialect]:
    ha = HomeAssistant()
    ha.decode("homeassistant/binary_sensor/d1/contact/config", dumps(HA_CONTACT))
    ha.decode("homeassistant/lock/d1/lock/config", dumps(HA_LOCK))
    return [TopicDialect(Z2M, zigbee2mqtt.decode, "zigbee2mqtt"),
            TopicDialect(JSON, json_events.decode, "json"), Tasmota(TASMOTA),
            MappingDialect(RULES, MAPPED), ha]


TOPICS = [
    "z/lock-z", "z/door-z", "z/door-z/availability", "j/lock-j", "j/door-j/availability",
    "tele/door_t/SENSOR", "tele/door_t/LWT", "stat/lock_t/POWER", "stat/lock_t/RESULT", "tele/lock_t/STATE",
    "tele/door_t/INFO1", "village/gate-1/event", "village/gate-2/event", "village/gate-1/lwt",
    "estate/a", "s/1", "s/2", "avail", "homeassistant/binary_sensor/d2/x/config",
    "homeassistant/lock/d1/lock/config", "homeassistant/device/d3/config", "homeassistant/sensor/d1/b/config",
    "nobody/listens/here",
]
HOT = ["z/door-z", "z/lock-z", "j/door-j", "tele/door_t/SENSOR", "village/gate-1/event", "s/1", "s/2"]
topics = st.sampled_from(HOT) | st.sampled_from(TOPICS)


# ---------------------------------------------------------------- properties
def attempt(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or the PayloadError it raised (any other exception fails the test)."""
    try:
        return fn(*args)
    except PayloadError as exc:
        return exc


@SETTINGS
@given(json_objects, st.sampled_from(["door_contact", "smart_lock"]))
def test_object_decoders_raise_only_payload_error(obj: dict[str, Any], kind: Any) -> None:
    for decode in (zigbee2mqtt.decode, json_events.decode):
        out = attempt(decode, obj, kind)
        assert isinstance(out, Reading) or out.result in LABELS


@SETTINGS
@given(payloads)
@example(b"[" * 100_000)
@example(b"x" * (MAX_PAYLOAD_BYTES + 1))
def test_envelopes_raise_only_payload_error(payload: bytes) -> None:
    for parse in (parse_json_object, decode_availability):
        out = attempt(parse, payload)
        assert not isinstance(out, PayloadError) or out.result in LABELS


@SETTINGS
@given(st.lists(st.tuples(topics | st.text(max_size=20), payloads), min_size=1, max_size=15))
def test_every_dialect_raises_only_payload_error(messages: list[tuple[str, bytes]]) -> None:
    for dialect in dialects():
        for topic, payload in messages:
            out = attempt(dialect.decode, topic, payload)
            if isinstance(out, PayloadError):
                assert out.result in LABELS
            else:
                assert out is None or all(isinstance(d, Decoded) for d in out)
            assert all(isinstance(f, str) for f in dialect.filters())


@SETTINGS
@given(st.lists(st.tuples(topics, payloads), min_size=1, max_size=30))
def test_device_hub_never_raises_and_counts_add_up(messages: list[tuple[str, bytes]]) -> None:
    events: list[SourceEvent] = []
    rows: list[dict[str, Any]] = []
    hub = DeviceHub([*Z2M, *JSON, *TASMOTA, *MAPPED], None, None, dialects=dialects(),
                    on_event=events.append, on_status=rows.append, held_open_s=5)
    for i, (topic, payload) in enumerate(messages):
        out = hub.handle(topic, payload, now=1000.0 + i)
        assert all(isinstance(e, SourceEvent) for e in out)
        if i % 5 == 4:
            hub.tick(now=1000.0 + i)
    assert sum(hub.counts.values()) == len(messages)  # every message is accounted for exactly once
    assert set(hub.counts) <= LABELS, hub.counts  # "error" would mean a decoder bug
    assert all(isinstance(e, SourceEvent) for e in events)
    # not stalled: good messages after the garbage still decode, in every dialect
    hub.handle("z/door-z", b'{"contact": true}', now=5000.0)
    hub.handle("z/door-z", b'{"contact": false}', now=5001.0)
    assert hub.devices["door-z"].door_open is True
    hub.handle("tele/door_t/SENSOR", b'{"Switch1": "OFF"}', now=5002.0)
    assert hub.handle("tele/door_t/SENSOR", b'{"Switch1": "ON"}', now=5003.0)[-1].kind == "door_opened"
    hub.handle("village/gate-1/lwt", b"online", now=5003.5)  # a known state, whatever the garbage said
    assert hub.handle("village/gate-1/lwt", b"offline", now=5004.0)[-1].kind == "device_offline"
    assert hub.handle("village/gate-1/lwt", b"online", now=5005.0)[-1].kind == "device_online"
    assert events[-1].kind == "device_online"


def test_old_top_level_devices_still_decode_through_dialects_for() -> None:
    devices = [DeviceConfig(id="door-z", kind="door_contact", topic="p/door-z"),
               DeviceConfig(id="door-j", kind="door_contact", topic="p/door-j", dialect="json")]
    hub = DeviceHub(devices, None, None)
    assert sorted(hub.filters()) == ["p/door-j", "p/door-j/availability", "p/door-z", "p/door-z/availability"]
    assert [str(e.kind) for e in hub.handle("p/door-j", b'{"event": "door_open"}', now=1)] == ["door_opened"]
    assert hub.handle("p/door-z", b"[" * 60_000, now=2) == []
    assert hub.counts == {"ok": 1, "bad_json": 1}


@pytest.mark.parametrize("payload", [b"[" * 60_000, b"{" * 10 + b"x" * 70_000, b"\xff" * 10, b"nan"])
def test_pathological_payloads_are_counted_not_raised(payload: bytes) -> None:
    hub = DeviceHub([], None, None, dialects=dialects())
    for topic in TOPICS:
        assert hub.handle(topic, payload, now=1.0) == []
    assert sum(hub.counts.values()) == len(TOPICS)
    assert "error" not in hub.counts


def test_a_lock_word_is_no_availability() -> None:
    """Each reading takes its own words: "unlock" on an availability topic is garbage, not offline."""
    hub = DeviceHub([*MAPPED], None, None, dialects=[MappingDialect(RULES, MAPPED)], held_open_s=5)
    assert hub.handle("village/gate-1/lwt", b"unlock", now=1.0) == []
    assert hub.counts["bad_payload"] == 1
    assert hub.handle("village/gate-1/lwt", b"offline", now=2.0)[-1].kind == "device_offline"
