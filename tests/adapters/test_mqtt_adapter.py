"""The ``mqtt`` source adapter against the real local Mosquitto and a private TLS/password Mosquitto.

Every dialect end to end (devices publish, the adapter's events() yields typed events), persistent
sessions across an adapter restart, the hub's shared broker, refused logins, bad payloads, and the
conformance suite (plain on 127.0.0.1:1883, and TLS with a client certificate and a password).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiomqtt
import pytest
from pydantic import ValidationError

from adapters.base import AdapterContext
from adapters.mqtt import MqttSource, MqttSourceConfig
from adapters.mqtt_client import MqttClient
from adapters.registry import create, parse_config
from hub.errors import AdapterAuthError, AdapterNotReady
from hub.events import SourceEvent
from tests.adapters.conformance import AdapterCase, AdapterConformance
from tests.adapters.mqtt_support import forget_session, require_mosquitto, unique, wait_until
from tests.support.mosquitto import PrivateMosquitto

pytestmark = pytest.mark.timeout(60)

PASSWORD = "s3cret-Conform-pass"


@pytest.fixture(scope="module")
def broker() -> Iterator[PrivateMosquitto]:
    with PrivateMosquitto() as m:
        yield m


async def publish(topic: str, payload: Any, *, retain: bool = False, port: int = 1883,
                  username: str | None = None, password: str | None = None) -> None:
    data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
    async with aiomqtt.Client("127.0.0.1", port, username=username, password=password) as dev:
        await dev.publish(topic, data, qos=1, retain=retain)


class Events:
    """Collects an adapter's events() in the background."""

    def __init__(self, adapter: MqttSource) -> None:
        self.adapter = adapter
        self.got: list[SourceEvent] = []
        self.error: BaseException | None = None
        self.arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Events:
        self._task = asyncio.create_task(self._run())
        assert await self.adapter.wait_ready(5), self.adapter.diagnostics()
        return self

    async def _run(self) -> None:
        try:
            async for event in self.adapter.events():
                self.got.append(event)
                self.arrived.set()
        except Exception as exc:
            self.error = exc

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def wait(self, n: int, timeout_s: float = 10.0) -> list[tuple[str, str]]:
        async with asyncio.timeout(timeout_s):
            while len(self.got) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return [(e.source_id, str(e.kind)) for e in self.got]


@contextlib.asynccontextmanager
async def running(config: dict[str, Any], context: AdapterContext | None = None) -> AsyncIterator[Events]:
    adapter = create({"kind": "mqtt", "clean_session": True, **config}, context)
    assert isinstance(adapter, MqttSource)
    async with adapter, Events(adapter) as events:
        yield events


# ---------------------------------------------------------------- config
def test_config_validation() -> None:
    cfg = parse_config({"kind": "mqtt", "id": "v1", "protocol": 5, "password": PASSWORD,
                        "url": f"mqtt://hub:{PASSWORD}@broker:1883",
                        "devices": [{"id": "d1", "topic": "z/d1"}]})
    assert isinstance(cfg, MqttSourceConfig)
    assert cfg.protocol == "5"
    assert PASSWORD not in repr(cfg) and PASSWORD not in json.dumps(cfg.redacted())
    bad: list[tuple[dict[str, Any], str]] = [
        ({"devices": [{"id": "d1"}]}, "needs a topic"),
        ({"devices": [{"id": "d1", "topic": "a"}, {"id": "d1", "topic": "b"}]}, "unique"),
        ({"devices": [{"id": "d1", "topic": "a", "lock": "nope"}]}, "unknown lock"),
        ({"dialect": "mapping"}, "needs mapping rules"),
        ({"url": "http://broker"}, "scheme"),
        ({"tls": {"key_file": "k.pem"}}, "key_file needs cert_file"),
        ({"protocol": "4"}, "protocol"),
        ({"max_devices": 0}, "max_devices"),
    ]
    for extra, message in bad:
        with pytest.raises(ValidationError, match=message):
            parse_config({"kind": "mqtt", "id": "v1", **extra})
    # the device limit reaches the discovery dialects (default 2,000)
    for dialect, extra in (("homeassistant", {}), ("mapping", {"mapping": [{"topic": "v/+device/e"}]})):
        limited = create({"kind": "mqtt", "id": "v1", "dialect": dialect, "max_devices": 5, **extra})
        assert isinstance(limited, MqttSource)
        assert getattr(limited.dialect()[0], "max_devices", None) == 5
    assert MqttSourceConfig(kind="mqtt", id="v1").max_devices == 2000


# ---------------------------------------------------------------- dialects end to end (real Mosquitto)
async def test_zigbee2mqtt_lock_and_door_with_status_rows() -> None:
    require_mosquitto()
    p = unique("z2m")
    rows: list[dict[str, Any]] = []
    config = {"id": "village-z", "grid": "440105001001", "dialect": "zigbee2mqtt", "devices": [
        {"id": "lock-1", "kind": "smart_lock", "topic": f"{p}/lock-1"},
        {"id": "door-1", "name": "3号楼单元门", "topic": f"{p}/door-1", "lock": "lock-1",
         "cameras": ["cam-1"]}]}
    async with running(config, AdapterContext(on_status=rows.append)) as ev:
        await publish(f"{p}/lock-1", {"state": "LOCK", "lock_state": "locked", "battery": 80})
        await publish(f"{p}/door-1", {"contact": True, "battery": 15})
        await publish(f"{p}/door-1", {"contact": False})  # nobody unlocked: forced
        fail = {"action": "unlock_failure_invalid_pin_or_id", "action_source_name": "keypad"}
        for _ in range(3):
            await publish(f"{p}/lock-1", fail)
        await publish(f"{p}/lock-1", {"action": "fingerprint_unlock", "lock_state": "unlocked"})
        await publish(f"{p}/door-1/availability", "offline")
        assert await ev.wait(5) == [("door-1", "low_battery"), ("door-1", "door_forced"),
                                    ("lock-1", "lock_failed_attempts"), ("lock-1", "lock_unlocked"),
                                    ("door-1", "device_offline")]
    forced = ev.got[1]
    assert (forced.grid, forced.data["cameras"]) == ("440105001001", ["cam-1"])
    assert forced.data["source"] == "village-z"
    assert ev.got[3].data["method"] == "fingerprint"
    last = {r["id"]: r for r in rows}
    assert last["door-1"]["status"] == "offline"
    assert last["lock-1"]["battery"] == 80.0 and last["lock-1"]["source"] == "village-z"


async def test_tasmota_lwt_switch_and_relay() -> None:
    require_mosquitto()
    p = unique("tasmota")
    config = {"id": "village-t", "dialect": "tasmota", "tasmota": {"full_topic": f"{p}/%prefix%/%topic%/"},
              "devices": [{"id": "door-t", "topic": "door_t"},
                          {"id": "strike-t", "kind": "smart_lock", "topic": "strike_t"}]}
    async with running(config) as ev:
        await publish(f"{p}/tele/door_t/LWT", "Online", retain=True)
        await publish(f"{p}/tele/door_t/SENSOR", {"Switch1": "OFF", "Battery": 90})
        await publish(f"{p}/stat/strike_t/POWER", "OFF")
        await publish(f"{p}/stat/strike_t/RESULT", {"POWER": "ON"})
        await publish(f"{p}/tele/door_t/SENSOR", {"Switch1": "ON"})
        await publish(f"{p}/tele/door_t/LWT", "Offline", retain=True)
        assert await ev.wait(3) == [("strike-t", "lock_unlocked"), ("door-t", "door_opened"),
                                    ("door-t", "device_offline")]
        assert ev.got[0].data["method"] == "remote"
    await publish(f"{p}/tele/door_t/LWT", b"", retain=True)  # clear the retained LWT


async def test_homeassistant_discovery_adds_and_removes_devices() -> None:
    require_mosquitto()
    p = unique("ha")
    rows: list[dict[str, Any]] = []
    config = {"id": "village-ha", "dialect": "homeassistant", "discovery_prefix": f"{p}/homeassistant",
              "devices": [{"id": "gate-3", "topic": "acme_gate_3", "cameras": ["cam-3"], "grid": "4401"}]}
    contact = {"dev_cla": "door", "stat_t": f"{p}/gate3", "val_tpl": "{{ value_json.contact }}",
               "pl_on": False, "pl_off": True, "avty_t": f"{p}/gate3/avail",
               "dev": {"ids": ["acme_gate_3"]}}
    lock = {"stat_t": f"{p}/gate3/lock", "dev": {"ids": ["acme_gate_3"]}}
    topics = [f"{p}/homeassistant/binary_sensor/gate3/contact/config",
              f"{p}/homeassistant/lock/gate3/config"]
    try:
        await publish(topics[0], contact, retain=True)  # retained before the hub starts
        async with running(config, AdapterContext(on_status=rows.append)) as ev:
            await publish(topics[1], lock, retain=True)
            # a row for the redefined device means the broker acknowledged its new lock state topic
            await wait_until(lambda: any(r["id"] == "gate-3" and r["kind"] == "smart_lock" for r in rows),
                             what="gate-3 reported as a smart lock")
            await publish(f"{p}/gate3/lock", "LOCKED")
            await publish(f"{p}/gate3", {"contact": True})
            await publish(f"{p}/gate3", {"contact": False})
            await publish(f"{p}/gate3/avail", "offline")
            assert await ev.wait(2) == [("gate-3", "door_forced"), ("gate-3", "device_offline")]
            assert ev.got[0].data["cameras"] == ["cam-3"] and ev.got[0].grid == "4401"
            for topic in topics:
                await publish(topic, b"", retain=True)
            await wait_until(lambda: bool(rows[-1].get("removed")), what="the device removed")
            assert rows[-1]["id"] == "gate-3"
            assert ev.adapter.hub is not None and ev.adapter.hub.devices == {}
    finally:
        for topic in topics:
            await publish(topic, b"", retain=True)


async def test_mapping_dialect_for_a_village_system() -> None:
    require_mosquitto()
    p = unique("village")
    config = {"id": "village-m", "dialect": "mapping", "grid": "440105001003", "mapping": [
        {"topic": f"{p}/+device/event", "fields": {"event": "data.type", "method": "data.method"},
         "values": {"event": {"1": "door_opened", "2": "door_closed", "4": "lock_unlocked",
                              "5": "unlock_failed", "6": "low_battery", "9": "ignore"},
                    "method": {"1": "fingerprint", "2": "password", "3": "card", "4": "remote", "5": "key"}}},
        {"topic": f"{p}/+device/lwt", "payload": "text", "fields": {"online": "$"},
         "values": {"online": {"up": True, "down": False}}}],
        "devices": [{"id": "gate-1", "kind": "smart_lock"}]}
    async with running(config) as ev:
        for type_, method in ((4, 3), (1, None), (9, None), (2, None), (6, None)):
            await publish(f"{p}/gate-1/event", {"data": {"type": type_, "method": method}})
        await publish(f"{p}/gate-1/event", {"data": {"type": 77}})  # unmapped: counted, logged
        await publish(f"{p}/gate-9/event", {"data": {"type": 1}})  # unknown device
        await publish(f"{p}/gate-1/lwt", "down")
        assert [k for _, k in await ev.wait(5)] == ["lock_unlocked", "door_opened", "door_closed",
                                                    "low_battery", "device_offline"]
        assert ev.got[0].data["method"] == "card"
        assert ev.got[1].data["unlocked_by"] == "card"
        hub = ev.adapter.hub
        assert hub is not None
        await wait_until(lambda: hub.counts["unknown_device"] == 1, what="the unknown device counted")
        assert hub.counts["bad_payload"] == 1 and hub.counts["unknown_device"] == 1
        assert hub.counts["ignored"] == 1
        assert ev.adapter.diagnostics()["counts"]["unknown_device"] == 1


async def test_held_open_and_silence_timers() -> None:
    require_mosquitto()
    p = unique("timers")
    config = {"id": "village-j", "dialect": "json", "held_open_s": 0.5, "offline_after_s": 1.5,
              "devices": [{"id": "gate-j", "topic": f"{p}/gate"}]}
    async with running(config) as ev:
        await publish(f"{p}/gate", {"event": "door_open"})
        assert await ev.wait(3, timeout_s=8) == [("gate-j", "door_opened"), ("gate-j", "door_held_open"),
                                                 ("gate-j", "device_offline")]
        assert ev.got[2].data["reason"] == "silence"
        await publish(f"{p}/gate", {"event": "heartbeat"})
        assert (await ev.wait(4))[-1] == ("gate-j", "device_online")


async def test_persistent_session_survives_an_adapter_restart() -> None:
    """Nothing a device publishes (QoS 1) while the hub restarts is lost."""
    url = require_mosquitto()
    p = unique("restart")
    config = {"kind": "mqtt", "id": "village-p", "dialect": "json", "protocol": 5, "client_id": f"{p}-hub",
              "devices": [{"id": "gate-p", "topic": f"{p}/gate"}]}
    try:
        adapter = create(config)
        assert isinstance(adapter, MqttSource)
        async with adapter:
            assert await adapter.wait_ready(5)
        # the hub is down; the gate keeps reporting
        await publish(f"{p}/gate", {"event": "unlock", "method": "card"})
        await publish(f"{p}/gate", {"event": "door_open"})
        await publish(f"{p}/gate", {"event": "forced"})
        adapter = create(config)
        assert isinstance(adapter, MqttSource)
        async with adapter, Events(adapter) as ev:
            assert [k for _, k in await ev.wait(3)] == ["lock_unlocked", "door_opened", "door_forced"]
    finally:
        await forget_session(url, f"{p}-hub")


async def test_shared_hub_broker_gets_a_session_of_its_own() -> None:
    url = require_mosquitto()
    p = unique("shared")
    async with MqttClient(url, f"{p}-hub", clean_session=True) as hub_client:
        context = AdapterContext(mqtt=hub_client, options={"held_open_s": 60})
        adapter = create({"kind": "mqtt", "id": "src", "clean_session": True, "dialect": "json",
                          "devices": [{"id": "g", "topic": f"{p}/g"}]}, context)
        assert isinstance(adapter, MqttSource)
        info = await adapter.probe()
        assert info.extra["broker"] == "mqtt://127.0.0.1:1883"
        async with adapter, Events(adapter) as ev:
            assert adapter.client is not None and adapter.client.client_id == f"{p}-hub-src"
            assert adapter.hub is not None and adapter.hub.held_open_s == 60
            await publish(f"{p}/g", {"event": "tamper"})
            assert await ev.wait(1) == [("g", "tamper")]


async def test_refused_login_stops_events_with_an_auth_error(broker: PrivateMosquitto,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    config = {"kind": "mqtt", "id": "village-x", "url": f"mqtt://127.0.0.1:{broker.plain_port}",
              "username": "hub", "password": "Wrong-Pass-42", "dialect": "json",
              "devices": [{"id": "g", "topic": "x/g"}]}
    adapter = create(config)
    with pytest.raises(AdapterAuthError, match="refused the login"):
        await adapter.probe()
    with pytest.raises(AdapterNotReady):
        await anext(aiter(adapter.events()))
    async with adapter:
        with pytest.raises(AdapterAuthError):
            async with asyncio.timeout(10):
                await anext(aiter(adapter.events()))
    assert "Wrong-Pass-42" not in caplog.text


async def test_bad_payloads_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    require_mosquitto()
    caplog.set_level(logging.WARNING)
    p = unique("garbage")
    config = {"id": "village-g", "dialect": "zigbee2mqtt",
              "devices": [{"id": "door-g", "topic": f"{p}/door"}]}
    async with running(config) as ev:
        for payload in (b"\x00\xff", b"not json", b"[1]", b'{"contact": "yes"}', b"x" * 70_000):
            await publish(f"{p}/door", payload)
        await publish(f"{p}/door", {"contact": False})
        assert await ev.wait(1) == [("door-g", "door_opened")]
        hub = ev.adapter.hub
        assert hub is not None
        assert hub.counts == {"bad_json": 2, "bad_payload": 2, "too_large": 1, "ok": 1}
    logs = [r for r in caplog.records if "bad payload" in r.getMessage() and "door-g" in r.getMessage()]
    assert len(logs) == 1


# ---------------------------------------------------------------- conformance
class TestMqttSourceOnLocalMosquitto(AdapterConformance):
    @pytest.fixture
    def adapter_case(self) -> AdapterCase:
        require_mosquitto()
        p = unique("conform")

        async def door() -> None:
            await publish(f"{p}/door", {"contact": False})
            await publish(f"{p}/door", {"contact": True})

        return AdapterCase(
            config={"kind": "mqtt", "id": "village-c", "url": "mqtt://127.0.0.1:1883", "username": "hub",
                    "password": PASSWORD, "clean_session": True, "client_id": f"{p}-hub",
                    "devices": [{"id": "door-c", "topic": f"{p}/door"}]},
            secrets=[PASSWORD],
            trigger=door,
            no_restart_reason="the machine's shared Mosquitto cannot be restarted by a test; "
                              "TestMqttSourceTlsClientCertificate restarts its private broker",
            unreachable={"url": "mqtt://127.0.0.1:9"},
        )


class TestMqttSourceTlsClientCertificate(AdapterConformance):
    @pytest.fixture
    def adapter_case(self, broker: PrivateMosquitto) -> AdapterCase:
        p = unique("conform-tls")
        c = broker.certs
        assert c is not None
        device_password = broker.users["device"]

        async def door() -> None:
            for contact in (False, True):
                await publish(f"{p}/gate", {"event": "door_open" if not contact else "door_close"},
                              port=broker.plain_port, username="device", password=device_password)

        return AdapterCase(
            config={"kind": "mqtt", "id": "village-tls", "url": f"mqtts://127.0.0.1:{broker.tls_port}",
                    "protocol": "5", "username": "hub", "password": broker.users["hub"],
                    "clean_session": True,
                    "client_id": f"{p}-hub", "dialect": "json",
                    "tls": {"ca_file": str(c.ca), "cert_file": str(c.client_cert),
                            "key_file": str(c.client_key)},
                    "devices": [{"id": "gate-tls", "kind": "smart_lock", "topic": f"{p}/gate"}]},
            secrets=[broker.users["hub"]],
            trigger=door,
            restart_peer=lambda: asyncio.to_thread(broker.restart),
            bad_auth={"password": "Wrong-Pass-99"},
            unreachable={"url": "mqtts://127.0.0.1:9"},
        )
