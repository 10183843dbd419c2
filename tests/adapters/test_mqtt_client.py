"""MqttClient against the real Mosquitto, the embedded amqtt broker (restarted on the same port) and a
private Mosquitto with TLS client certificates and passwords (tests/support/mosquitto.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Iterator
from typing import Literal

import aiomqtt
import pytest

from adapters.mqtt_broker import tls_context_from_files
from adapters.mqtt_client import MqttClient, encode_payload, parse_mqtt_url
from hub.embedded_broker import EmbeddedBroker
from hub.errors import AdapterAuthError, AdapterConnectError, ConfigError
from tests.adapters.mqtt_support import (
    forget_session,
    free_port,
    require_mosquitto,
    take,
    unique,
    wait_until,
)
from tests.support.mosquitto import PrivateMosquitto


def fast(url: str, client_id: str) -> MqttClient:
    return MqttClient(url, client_id, backoff_initial_s=0.1, backoff_max_s=0.5)


def test_parse_urls() -> None:
    a = parse_mqtt_url("mqtt://hub:p%40ss@broker.example:1884")
    assert (a.host, a.port, a.username, a.password, a.tls) == ("broker.example", 1884, "hub", "p@ss", False)
    b = parse_mqtt_url("mqtts://broker.example")
    assert (b.port, b.tls, b.username) == (8883, True, None)
    assert parse_mqtt_url(None).port == 1883
    with pytest.raises(ConfigError, match="scheme"):
        parse_mqtt_url("http://broker:1883")
    with pytest.raises(ConfigError, match="no host"):
        parse_mqtt_url("mqtt://:1883")


def test_encode_payload() -> None:
    assert encode_payload(b"\x00\x01") == b"\x00\x01"
    assert encode_payload("门已打开") == "门已打开".encode()
    assert json.loads(encode_payload({"a": 1, "门": "开"})) == {"a": 1, "门": "开"}


async def test_roundtrip_on_mosquitto_qos1() -> None:
    url = require_mosquitto()
    prefix = unique("roundtrip")
    async with MqttClient(url, prefix + "-sub", clean_session=True) as sub, \
            MqttClient(url, prefix + "-pub", clean_session=True) as pub:
        await sub.subscribe(f"{prefix}/#", qos=1)
        assert await sub.wait_online(5)
        await pub.publish(f"{prefix}/a", {"event": "door_open"})
        await pub.publish(f"{prefix}/b", "text")
        await pub.publish(f"{prefix}/c", b"\xff\x00")
        got = await take(sub.messages(), 3)
        assert [(m.topic, m.payload, m.qos) for m in got] == [
            (f"{prefix}/a", b'{"event":"door_open"}', 1),
            (f"{prefix}/b", b"text", 1),
            (f"{prefix}/c", b"\xff\x00", 1),
        ]
        assert await pub.drain(5)
        assert pub.stats.published == 3
        assert sub.stats.received == 3


async def test_subscribe_all_returns_once_the_broker_acknowledged_every_filter() -> None:
    """250 filters go out in SUBSCRIBE packets of 100; when subscribe_all returns, a message published
    on any of them at once (not retained) is delivered. unsubscribe_all takes them away again."""
    url = require_mosquitto()
    prefix = unique("suback")
    topics = [f"{prefix}/d{i}" for i in range(250)]
    async with MqttClient(url, prefix + "-sub", clean_session=True) as sub, \
            aiomqtt.Client("127.0.0.1", 1883, identifier=prefix + "-pub") as pub:
        assert await sub.wait_online(5)
        await sub.subscribe_all(topics, qos=1)
        for topic in topics[::50]:
            await pub.publish(topic, "ON", qos=1)
        assert [m.topic for m in await take(sub.messages(), 5)] == topics[::50]
        await sub.unsubscribe_all(topics[:-1])
        await pub.publish(topics[0], "gone", qos=1)
        await pub.publish(topics[-1], "kept", qos=1)
        assert [(m.topic, m.payload) for m in await take(sub.messages(), 1)] == [(topics[-1], b"kept")]
        assert sub.stats.received == 6


async def test_reconnects_and_resubscribes_after_broker_restart() -> None:
    broker = EmbeddedBroker(port=free_port())
    url = await broker.start()
    prefix = unique("restart")
    try:
        async with fast(url, prefix + "-sub") as sub, fast(url, prefix + "-pub") as pub:
            await sub.subscribe(f"{prefix}/#")
            assert await sub.wait_online(5)
            messages = sub.messages()
            await pub.publish(f"{prefix}/x", "before")
            assert [m.payload for m in await take(messages, 1)] == [b"before"]

            await broker.stop()  # the restarted amqtt broker has forgotten every subscription
            await asyncio.sleep(0.3)
            assert not sub.online
            assert not pub.online
            await broker.start()
            assert broker.url == url  # same port
            assert await sub.wait_online(10)
            assert await pub.wait_online(10)
            await pub.publish(f"{prefix}/x", "after")
            # the same messages() iterator keeps working: the client re-subscribed by itself
            assert [m.payload for m in await take(messages, 1)] == [b"after"]
            assert sub.stats.connects == 2
    finally:
        await broker.stop()


async def test_publish_queues_while_offline_and_flushes_on_reconnect() -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port)
    prefix = unique("queue")
    pub = MqttClient(f"mqtt://127.0.0.1:{port}", prefix + "-pub", max_queued=3,
                     backoff_initial_s=2.0, backoff_max_s=4.0)
    async with pub:
        for i in range(5):
            await pub.publish(f"{prefix}/m", f"m{i}")
        assert pub.queued == 3
        assert pub.stats.dropped == 2  # the oldest were dropped and counted
        await wait_until(lambda: pub.stats.connect_failures >= 1, what="the first failed connect")
        # the next attempt is >= 1 s away: start the broker and subscribe before the publisher returns
        url = await broker.start()
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier=prefix + "-raw") as raw:
                await raw.subscribe(f"{prefix}/#", qos=1)
                assert not pub.online, "publisher reconnected before the test subscriber (timing)"
                assert await pub.drain(10)
                got: list[bytes] = []
                async with asyncio.timeout(5):
                    async for m in raw.messages:
                        assert isinstance(m.payload, bytes)
                        got.append(m.payload)
                        if len(got) == 3:
                            break
                assert got == [b"m2", b"m3", b"m4"]
                assert url.endswith(f":{port}")
        finally:
            await broker.stop()


@pytest.mark.parametrize("protocol", [311, 5])
async def test_persistent_session_delivers_messages_published_while_away(protocol: int) -> None:
    url = require_mosquitto()
    prefix = unique(f"persist{protocol}")
    hub_id = prefix + "-hub"
    try:
        async with MqttClient(url, hub_id, protocol=protocol) as hub:  # type: ignore[arg-type]
            await hub.subscribe(f"{prefix}/#", qos=1)
            assert await hub.wait_online(5)
        # the hub is down (restarting); devices keep publishing with QoS 1
        async with MqttClient(url, prefix + "-dev", clean_session=True) as dev:
            for i in range(5):
                await dev.publish(f"{prefix}/door", {"n": i}, qos=1)
            assert await dev.drain(5)
        # the hub comes back with the same client id and does not even subscribe again
        async with MqttClient(url, hub_id, protocol=protocol) as hub:  # type: ignore[arg-type]
            got = await take(hub.messages(), 5)
        assert [json.loads(m.payload)["n"] for m in got] == [0, 1, 2, 3, 4]
    finally:
        await forget_session(url, hub_id)


async def test_password_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens here
    caplog.set_level(logging.DEBUG)
    async with fast(f"mqtt://hub:TopSecret42@127.0.0.1:{port}", unique("pw")) as c:
        await wait_until(lambda: c.stats.connect_failures >= 3, what="three failed connects")
        assert "TopSecret42" not in c.safe_url
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "offline" in text
    assert f"mqtt://hub:***@127.0.0.1:{port}" in text
    assert "TopSecret42" not in text
    offline_warnings = [r for r in caplog.records
                        if r.levelno == logging.WARNING and "offline" in r.getMessage()]
    assert len(offline_warnings) == 1  # logged once per transition, not once per attempt


# ---------------------------------------------------------------- a private broker: TLS, passwords, MQTT 5
@pytest.fixture(scope="module")
def broker() -> Iterator[PrivateMosquitto]:
    with PrivateMosquitto() as m:
        yield m


def tls(m: PrivateMosquitto, *, cert: str = "client", ca: str = "ca") -> ssl.SSLContext:
    c = m.certs
    assert c is not None
    files = {"client": (c.client_cert, c.client_key), "rogue": (c.rogue_cert, c.rogue_key),
             "none": (None, None)}
    return tls_context_from_files(c.ca if ca == "ca" else c.other_ca, *files[cert])


@pytest.mark.parametrize("protocol", [311, 5])
async def test_tls_client_certificate_and_password(broker: PrivateMosquitto,
                                                   protocol: Literal[311, 5]) -> None:
    ctx = await asyncio.to_thread(tls, broker)
    url = broker.url(tls=True)
    prefix = unique(f"tls{protocol}")
    async with MqttClient(url, prefix + "-sub", protocol=protocol, tls_context=ctx,
                          clean_session=True) as sub, \
            MqttClient(broker.url("device", tls=True), prefix + "-pub", protocol=protocol, tls_context=ctx,
                       clean_session=True) as pub:
        await sub.subscribe(f"{prefix}/#")
        assert await sub.wait_online(5), sub.last_error
        await pub.publish(f"{prefix}/door", {"contact": False})
        got = await take(sub.messages(), 1)
        assert got[0].payload == b'{"contact":false}'
        assert sub.safe_url == f"mqtts://hub:***@127.0.0.1:{broker.tls_port}"
    info = await MqttClient(url, prefix, protocol=protocol, tls_context=ctx).probe()
    assert info["tls"] is True
    assert info["protocol"] == ("5" if protocol == 5 else "3.1.1")
    assert str(info["version"]).startswith("mosquitto version")


@pytest.mark.parametrize(("cert", "ca", "reason"), [
    ("none", "ca", "refused our client certificate"),
    ("rogue", "ca", "refused our client certificate"),
    ("client", "other", "not trusted"),
])
async def test_tls_refusals_are_auth_errors(broker: PrivateMosquitto, cert: str, ca: str,
                                            reason: str) -> None:
    ctx = await asyncio.to_thread(tls, broker, cert=cert, ca=ca)
    client = MqttClient(broker.url(tls=True), unique("tlsbad"), tls_context=ctx)
    t0 = time.monotonic()
    with pytest.raises(AdapterAuthError, match=reason) as exc:
        await client.probe(timeout_s=2)
    assert time.monotonic() - t0 < 5
    assert broker.users["hub"] not in str(exc.value)


async def test_client_without_certificate_gives_up_with_fail_on_auth(broker: PrivateMosquitto,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    ctx = await asyncio.to_thread(tls, broker, cert="none")
    async with MqttClient(broker.url(tls=True), unique("nocert"), tls_context=ctx, fail_on_auth=True,
                          publish_timeout_s=1.0) as client:
        with pytest.raises(AdapterAuthError, match="client certificate"):
            await take(client.messages(), 1, timeout_s=10)
        assert not client.online
    assert broker.users["hub"] not in caplog.text


@pytest.mark.parametrize("protocol", [311, 5])
async def test_wrong_password_is_an_auth_error(broker: PrivateMosquitto, protocol: Literal[311, 5],
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = broker.url(password="Wrong-Pass-1234")
    with pytest.raises(AdapterAuthError, match="refused the login") as exc:
        await MqttClient(url, unique("badpw"), protocol=protocol).probe()
    assert "Wrong-Pass-1234" not in str(exc.value)
    # the reconnecting client: logged once as an error, keeps retrying (the hub's shared connection) ...
    async with fast(url, unique("badpw")) as retrying:
        await wait_until(lambda: retrying.stats.connect_failures >= 3, what="three refused logins")
        assert retrying.auth_error is not None
    # ... or gives up (a source adapter, so its supervisor reports auth_failed)
    async with MqttClient(url, unique("badpw"), protocol=protocol, fail_on_auth=True) as giving_up:
        with pytest.raises(AdapterAuthError):
            await take(giving_up.messages(), 1)
    refused = [r for r in caplog.records
               if r.levelno == logging.ERROR and "refused the login" in r.getMessage()]
    assert len(refused) == 2  # once per client, not once per attempt
    assert "Wrong-Pass-1234" not in caplog.text


async def test_unreachable_broker_is_a_connect_error() -> None:
    client = MqttClient(f"mqtt://hub:pw-Secret-9@127.0.0.1:{free_port()}", unique("gone"))
    with pytest.raises(AdapterConnectError) as exc:
        await client.probe(timeout_s=2)
    assert "pw-Secret-9" not in str(exc.value)
    assert isinstance(exc.value, OSError)


@pytest.mark.parametrize("protocol", [311, 5])
async def test_persistent_session_over_tls(broker: PrivateMosquitto, protocol: Literal[311, 5]) -> None:
    """QoS 1 messages published while the hub is away arrive when it reconnects with the same id."""
    ctx = await asyncio.to_thread(tls, broker)
    prefix = unique(f"tlspersist{protocol}")
    hub_id = prefix + "-hub"
    url = broker.url(tls=True)
    async with MqttClient(url, hub_id, protocol=protocol, tls_context=ctx) as hub:
        await hub.subscribe(f"{prefix}/#", qos=1)
        assert await hub.wait_online(5)
    async with MqttClient(broker.url("device"), prefix + "-dev", protocol=protocol,
                          clean_session=True) as dev:
        for i in range(20):
            await dev.publish(f"{prefix}/lock", {"n": i}, qos=1)
        assert await dev.drain(5)
    async with MqttClient(url, hub_id, protocol=protocol, tls_context=ctx) as hub:
        got = await take(hub.messages(), 20)
    assert [json.loads(m.payload)["n"] for m in got] == list(range(20))
    assert all(m.qos == 1 for m in got)
