"""IncidentPublisher: bus ``incident`` → ``<prefix>/<grid>/incidents`` on the real Mosquitto, QoS 1."""

from __future__ import annotations

import asyncio
import json

import aiomqtt

from adapters.mqtt_client import MqttClient
from alerts.mqtt_out import IncidentPublisher, incident_topic
from hub.bus import Bus
from tests.adapters.mqtt_support import require_mosquitto, unique


def test_incident_topic() -> None:
    assert incident_topic("sanwang", "440105001001") == "sanwang/440105001001/incidents"
    assert incident_topic("sanwang/", None) == "sanwang/unassigned/incidents"
    assert incident_topic("sanwang", "") == "sanwang/unassigned/incidents"
    assert incident_topic("x", "a/+#") == "x/a___/incidents"


async def test_publishes_incidents_with_qos1() -> None:
    url = require_mosquitto()
    prefix = unique("incidents")
    bus = Bus()
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=prefix + "-ops") as ops:
        await ops.subscribe(f"{prefix}/+/incidents", qos=1)
        async with MqttClient(url, prefix + "-hub", clean_session=True) as client:
            publisher = IncidentPublisher(bus, client, prefix)
            task = asyncio.create_task(publisher.run())
            await asyncio.sleep(0.05)  # let run() subscribe to the bus
            bus.publish("incident", {"id": "inc-1", "grid": "440105001001", "class": "emergency",
                                     "title": "3号楼单元门被强行打开"})
            bus.publish("incident", {"id": "inc-2", "title": "no grid"})
            bus.publish("incident", "not a dict")
            got = []
            async with asyncio.timeout(10):
                async for m in ops.messages:
                    got.append(m)
                    if len(got) == 2:
                        break
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [str(m.topic) for m in got] == [
        f"{prefix}/440105001001/incidents", f"{prefix}/unassigned/incidents"]
    assert all(m.qos == 1 for m in got)
    assert isinstance(got[0].payload, bytes)
    first = json.loads(got[0].payload)
    assert first["id"] == "inc-1"
    assert first["title"] == "3号楼单元门被强行打开"
    assert publisher.published == 2
    assert publisher.skipped == 1
