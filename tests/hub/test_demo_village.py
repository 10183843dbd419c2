"""The demo's village access system: its own JSON format, decoded by the mapping dialect from config."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.mqtt import MqttSource, MqttSourceConfig
from adapters.mqtt_client import MqttClient
from adapters.registry import create
from hub.config_loader import load_config
from hub.demo_village import DemoVillage, VillageFormat
from hub.events import EventKind, SourceEvent
from tests.adapters.mqtt_support import require_mosquitto, unique, wait_until

ROOT = Path(__file__).resolve().parents[2]


def demo_source(**overrides: object) -> MqttSourceConfig:
    cfg = load_config(ROOT / "config" / "demo.yaml", env={})
    (src,) = [s for s in cfg.sources if isinstance(s, MqttSourceConfig)]
    return src.model_copy(update=overrides)


def test_messages_follow_the_configured_format() -> None:
    fmt = VillageFormat(demo_source().mapping[0])
    assert fmt.topic("xinhe-north") == "xinhe/access/xinhe-north/event"
    body = fmt.payload("lock_unlocked", "card")
    assert body["data"]["type"] == "4"
    assert body["data"]["how"] == "C"
    assert isinstance(body["data"]["time"], int)
    assert fmt.payload("door_forced")["data"]["type"] == "3"


async def test_the_hub_decodes_the_simulated_village_system_on_a_real_broker() -> None:
    url = require_mosquitto()
    prefix = unique("village")
    rule = demo_source().mapping[0]
    source = demo_source(url=url, client_id=prefix + "-hub", clean_session=True, mapping=[
        rule.model_copy(update={"topic": f"{prefix}/access/+device/event"})])
    adapter = create(source)
    assert isinstance(adapter, MqttSource)
    got: list[SourceEvent] = []

    async def collect() -> None:
        async for event in adapter.events():
            got.append(event)

    async with adapter, MqttClient(url, prefix + "-gateway", clean_session=True) as gateway:
        counts: dict[str, int] = {}
        consumer = asyncio.create_task(collect())
        await asyncio.sleep(0.5)  # subscribed
        village = DemoVillage(source, gateway, interval_s=0.05, forced_every_s=0.6, rng_seed=7)
        sim = asyncio.create_task(village.run())
        try:
            wanted = {EventKind.LOCK_UNLOCKED, EventKind.DOOR_OPENED, EventKind.DOOR_FORCED}
            await wait_until(lambda: wanted <= {e.kind for e in got}, 30, "unlock, open and forced events")
            counts = adapter.diagnostics()["counts"]
        finally:
            sim.cancel()
            consumer.cancel()
            await asyncio.gather(sim, consumer, return_exceptions=True)
    unlock = next(e for e in got if e.kind is EventKind.LOCK_UNLOCKED)
    assert unlock.data["method"] in {"fingerprint", "card", "password"}
    assert all(e.source_id == "xinhe-north" for e in got)
    forced = next(e for e in got if e.kind is EventKind.DOOR_FORCED)
    assert forced.data["cameras"] == ["cam-parking"]
    assert counts.get("ok", 0) >= 3
    assert set(counts) <= {"ok"}, counts  # every message decoded: no bad payloads, no unknown devices
