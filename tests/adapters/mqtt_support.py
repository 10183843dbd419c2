"""Shared MQTT test helpers: the real local Mosquitto, unique topics, collecting messages.

Tests run against the real Mosquitto on 127.0.0.1:1883 (start it with
``mosquitto -d -c /etc/mosquitto/mosquitto.conf``) and against the embedded amqtt broker.
Every test uses its own topic prefix and client ids, so parallel runs never collide.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable

import aiomqtt
import pytest

from adapters.mqtt_client import MqttMessage, parse_mqtt_url

MOSQUITTO_HOST = "127.0.0.1"
MOSQUITTO_PORT = 1883
MOSQUITTO_URL = f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}"


def require_mosquitto() -> str:
    """The local Mosquitto URL; fails the test loudly (never skips) when it is not running."""
    try:
        with socket.create_connection((MOSQUITTO_HOST, MOSQUITTO_PORT), timeout=1.0):
            pass
    except OSError as exc:
        pytest.fail(
            f"Mosquitto is not reachable at {MOSQUITTO_HOST}:{MOSQUITTO_PORT} ({exc}). Start it with: "
            "mosquitto -d -c /etc/mosquitto/mosquitto.conf"
        )
    return MOSQUITTO_URL


def unique(name: str) -> str:
    """A unique topic prefix / client id fragment for one test."""
    return f"test-{name}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (for library counters that have no event to wait on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)


async def take(messages: AsyncIterator[MqttMessage], n: int, timeout_s: float = 10.0) -> list[MqttMessage]:
    """The next ``n`` messages, or fail after ``timeout_s``."""
    out: list[MqttMessage] = []

    async def _collect() -> None:
        async for m in messages:
            out.append(m)
            if len(out) >= n:
                return

    try:
        await asyncio.wait_for(_collect(), timeout_s)
    except TimeoutError:
        pytest.fail(f"expected {n} MQTT messages within {timeout_s}s, got {len(out)}: {out}")
    return out


async def forget_session(url: str, client_id: str) -> None:
    """Drop a persistent session a test left on the shared Mosquitto."""
    a = parse_mqtt_url(url)
    async with aiomqtt.Client(a.host, a.port, identifier=client_id, clean_session=True):
        pass
