"""MqttChannel: notices → ``<prefix>/<grid>/incidents`` on the real Mosquitto, QoS 1, acknowledged."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from adapters.mqtt_client import MqttClient
from alerts.channels.base import Notice
from alerts.channels.mqtt import MqttChannel
from alerts.mqtt_out import incident_topic
from hub.errors import DeliveryError
from tests.adapters.mqtt_support import require_mosquitto, unique, wait_until


def test_incident_topic() -> None:
    assert incident_topic("sanwang", "440105001001") == "sanwang/440105001001/incidents"
    assert incident_topic("sanwang/", None) == "sanwang/unassigned/incidents"
    assert incident_topic("sanwang", "") == "sanwang/unassigned/incidents"
    assert incident_topic("x", "a/+#") == "x/a___/incidents"


def notice(key: str, incident: dict[str, object]) -> Notice:
    return Notice(key=key, event="assigned", incident=incident, state="dispatched",
                  at="2026-01-01T00:00:00+00:00")


async def test_publishes_notices_with_qos1_and_waits_for_the_ack() -> None:
    url = require_mosquitto()
    prefix = unique("incidents")
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=prefix + "-ops") as ops:
        await ops.subscribe(f"{prefix}/+/incidents", qos=1)
        async with MqttClient(url, prefix + "-hub", clean_session=True) as client:
            await wait_until(lambda: client.online, 10)
            channel = MqttChannel(client, prefix)
            await channel.send(notice("k1", {"id": "inc-1", "grid": "440105001001", "class": "emergency",
                                             "title": "3号楼单元门被强行打开"}))
            await channel.send(notice("k2", {"id": "inc-2", "title": "no grid"}))
            got = []
            async with asyncio.timeout(10):
                async for m in ops.messages:
                    got.append(m)
                    if len(got) == 2:
                        break
    topics = [f"{prefix}/440105001001/incidents", f"{prefix}/unassigned/incidents"]
    assert [str(m.topic) for m in got] == topics
    assert all(m.qos == 1 for m in got)
    assert isinstance(got[0].payload, bytes)
    first = json.loads(got[0].payload)
    assert first["id"] == "inc-1" and first["title"] == "3号楼单元门被强行打开"
    assert first["notice"]["key"] == "k1" and first["notice"]["event"] == "assigned"


async def test_broker_away_is_a_retryable_failure() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", unique("nobroker"), clean_session=True)  # never connects
    with pytest.raises(DeliveryError) as err:
        await MqttChannel(client, "x").send(notice("k", {"id": "i"}))
    assert err.value.retryable
