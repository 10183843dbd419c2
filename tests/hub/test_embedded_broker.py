"""EmbeddedBroker: real amqtt broker in-process; free port, clean stop, restart, persistent sessions."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from adapters.mqtt_client import MqttClient
from hub.embedded_broker import EmbeddedBroker
from hub.errors import EmbeddedServiceError
from tests.adapters.mqtt_support import take, unique


def port_is_free(port: int) -> bool:
    """Nothing listens: connecting is refused and a listener can bind (TIME_WAIT leftovers allowed)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        pass
    else:
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


async def test_start_publish_stop_leaves_no_listener() -> None:
    broker = EmbeddedBroker()
    with pytest.raises(EmbeddedServiceError):
        _ = broker.url
    async with broker as url:
        assert url.startswith("mqtt://127.0.0.1:")
        port = broker.port
        assert port > 0
        assert not port_is_free(port)
        prefix = unique("emb")
        client = MqttClient(url, prefix, backoff_initial_s=0.1, backoff_max_s=0.3)
        async with client:
            await client.subscribe(f"{prefix}/#")
            assert await client.wait_online(5)
            await client.publish(f"{prefix}/hello", {"门": "开"})
            got = await take(client.messages(), 1)
            assert got[0].payload.decode() == '{"门":"开"}'
            # stop with a client still connected: must be quick and close the listener
            t0 = time.monotonic()
            await broker.stop()
            took = time.monotonic() - t0
            assert took < 2.0, took
            assert port_is_free(port)
            await asyncio.sleep(0.2)
            assert not client.online
    assert not broker.running


async def test_persistent_session_survives_client_restart() -> None:
    async with EmbeddedBroker() as url:
        prefix = unique("embpersist")
        async with MqttClient(url, prefix + "-hub") as hub:
            await hub.subscribe(f"{prefix}/#", qos=1)
            assert await hub.wait_online(5)
        async with MqttClient(url, prefix + "-dev", clean_session=True) as dev:
            for i in range(3):
                await dev.publish(f"{prefix}/lock", str(i), qos=1)
            assert await dev.drain(5)
        async with MqttClient(url, prefix + "-hub") as hub:
            got = await take(hub.messages(), 3)
        assert [m.payload for m in got] == [b"0", b"1", b"2"]


async def test_two_brokers_get_different_ports() -> None:
    async with EmbeddedBroker() as a, EmbeddedBroker() as b:
        assert a != b
