"""DemoSensors: realistic lock/door traffic that DeviceHub decodes, including an early forced door."""

from __future__ import annotations

import asyncio

from adapters.mqtt_client import MqttClient
from adapters.mqtt_devices import DeviceHub
from hub.bus import Bus
from hub.config import DeviceConfig
from hub.demo_sensors import DemoSensors
from hub.embedded_broker import EmbeddedBroker
from hub.events import EventKind, SourceEvent
from tests.adapters.mqtt_support import unique


def village(prefix: str) -> list[DeviceConfig]:
    return [
        DeviceConfig(id="lock-b3", kind="smart_lock", grid="440105001001", topic=f"{prefix}/lock-b3"),
        DeviceConfig(id="door-b3", kind="door_contact", grid="440105001001", topic=f"{prefix}/door-b3",
                     lock="lock-b3", cameras=["cam-1"]),
        DeviceConfig(id="lock-gate", kind="smart_lock", grid="440105001002", topic=f"{prefix}/lock-gate",
                     dialect="json"),
        DeviceConfig(id="door-gate", kind="door_contact", grid="440105001002", topic=f"{prefix}/door-gate",
                     dialect="json", lock="lock-gate"),
        DeviceConfig(id="lock-shed", kind="smart_lock", grid="440105001002", topic=f"{prefix}/lock-shed"),
    ]


async def test_demo_traffic_decodes_and_forces_a_door_early() -> None:
    prefix = unique("demo")
    devices = village(prefix)
    bus = Bus()
    events = bus.subscribe("source_event", maxsize=10_000)
    async with EmbeddedBroker() as url, \
            MqttClient(url, prefix + "-hub") as hub_client, \
            MqttClient(url, prefix + "-sensors", clean_session=True) as sensor_client:
        hub = DeviceHub(devices, bus, hub_client)
        hub_task = asyncio.create_task(hub.run())
        assert await hub_client.wait_online(5)
        await asyncio.wait_for(hub.ready.wait(), 5)
        sensors = DemoSensors(devices, sensor_client, interval_s=0.4, rng_seed=7)
        sim_task = asyncio.create_task(sensors.run())
        seen: list[SourceEvent] = []
        t0 = asyncio.get_running_loop().time()
        forced_at = None
        try:
            async with asyncio.timeout(20):
                while forced_at is None or len({e.kind for e in seen}) < 5:
                    _, ev = await events.get()
                    seen.append(ev)
                    if ev.kind == EventKind.DOOR_FORCED and forced_at is None:
                        forced_at = asyncio.get_running_loop().time() - t0
        finally:
            sim_task.cancel()
            hub_task.cancel()
            await asyncio.gather(sim_task, hub_task, return_exceptions=True)
    assert forced_at is not None
    assert forced_at < 20
    kinds = {e.kind for e in seen}
    expected = {EventKind.DOOR_FORCED, EventKind.LOCK_UNLOCKED, EventKind.DOOR_OPENED, EventKind.DOOR_CLOSED}
    assert expected <= kinds
    forced = next(e for e in seen if e.kind == EventKind.DOOR_FORCED)
    assert forced.source_id in {"door-b3", "door-gate"}
    assert forced.data["reason"] == "opened_while_locked"
    methods = {e.data["method"] for e in seen if e.kind == EventKind.LOCK_UNLOCKED}
    assert methods <= {"fingerprint", "password", "card"}
    # residents unlock first, so their door openings are not forced
    assert all("unlocked_by" in e.data for e in seen if e.kind == EventKind.DOOR_OPENED)
    assert not {k for k in hub.counts if k.startswith("bad") or k in ("too_large", "unknown_topic")}
    assert hub.counts["availability"] >= len(devices)
    assert all(s["status"] == "online" for s in hub.status())
    assert sensors.counts["forced"] >= 1
