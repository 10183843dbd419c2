"""The hub's MQTT connection, built on aiomqtt 2.

:class:`MqttClient` keeps one logical session alive across broker restarts:

- it reconnects forever with jittered exponential backoff and logs each offline/online transition once;
- topic filters registered with :meth:`MqttClient.subscribe` are subscribed again after every reconnect;
- :meth:`MqttClient.messages` is one async iterator that survives reconnects;
- :meth:`MqttClient.publish` never blocks: messages go to a bounded outgoing queue (oldest dropped and
  counted when full) that a sender task flushes whenever the broker is reachable;
- by default the session is persistent (MQTT 3.1.1 ``clean_session=False``; MQTT 5 ``clean_start=False``
  plus a session expiry) and subscriptions use QoS 1, so messages published while the hub restarts are
  delivered when it comes back;
- TLS (``mqtts://`` or a ``tls_context``, with a client certificate if the broker requires one) and
  username/password (in the URL or as arguments);
- a refused login (bad password, or a TLS client certificate the broker rejects) is logged once as an
  error; with ``fail_on_auth=True`` the client stops and :meth:`MqttClient.messages` raises
  :class:`hub.errors.AdapterAuthError` instead of retrying forever.

Passwords never reach a log line (:mod:`hub.redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import aiomqtt

from adapters.mqtt_broker import (
    BrokerAddress,
    ConnectSettings,
    auth_refusal,
    parse_mqtt_url,
    probe,
    tls_refusal,
)
from adapters.mqtt_message import MqttMessage, Payload, encode_payload
from hub.errors import AdapterAuthError
from hub.redact import redact_text, redact_url

__all__ = ["BrokerAddress", "MqttClient", "MqttMessage", "Payload", "encode_payload", "parse_mqtt_url"]

log = logging.getLogger(__name__)

SUBSCRIBE_BATCH = 100  # topic filters per SUBSCRIBE / UNSUBSCRIBE packet
_T = TypeVar("_T")


@dataclass(slots=True)
class MqttStats:
    received: int = 0
    published: int = 0
    dropped: int = 0  # outgoing messages dropped because the queue was full
    connects: int = 0
    connect_failures: int = 0


_STOPPED = MqttMessage("\0stopped", b"")  # queued when the client gave up (fail_on_auth)


@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttClient:
    """A reconnecting MQTT client. Use as ``async with MqttClient(url, "id") as client:``.

    ``messages()`` is meant for one consumer (e.g. :class:`adapters.mqtt_devices.DeviceHub`).
    """

    def __init__(
        self,
        url: str | None,
        client_id: str,
        *,
        clean_session: bool = False,
        keepalive: int = 30,
        protocol: Literal[311, 5] = 311,
        session_expiry_s: int = 7 * 24 * 3600,
        tls_context: ssl.SSLContext | None = None,
        tls_insecure: bool = False,
        username: str | None = None,
        password: str | None = None,
        fail_on_auth: bool = False,
        max_queued: int = 1000,
        max_incoming: int = 10_000,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        publish_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        self.url = url
        self.address = parse_mqtt_url(url)
        if username is not None or password is not None:
            a = self.address
            self.address = BrokerAddress(a.host, a.port, username if username is not None else a.username,
                                         password if password is not None else a.password,
                                         a.tls or tls_context is not None)
        self.client_id = client_id
        self.clean_session = clean_session
        self.keepalive = keepalive
        self.protocol = protocol
        self.session_expiry_s = session_expiry_s
        self._tls_context = tls_context
        if self.address.tls and tls_context is None:
            self._tls_context = ssl.create_default_context()
        self._tls_insecure = tls_insecure
        self._fail_on_auth = fail_on_auth
        self.auth_error: str | None = None  # set while the broker refuses our credentials
        self._max_queued = max_queued
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._publish_timeout = publish_timeout_s
        self._close_timeout = close_timeout_s
        self.stats = MqttStats()
        self._filters: dict[str, int] = {}
        self._subscribed: set[str] = set()  # filters subscribed on the current connection
        self._out: deque[_Outgoing] = deque()
        self._out_ready = asyncio.Event()
        self._idle = asyncio.Event()  # set when nothing is queued or in flight
        self._idle.set()
        self._in: asyncio.Queue[MqttMessage] = asyncio.Queue(max_incoming)
        self._online = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending = 0
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, s: ConnectSettings, **kwargs: Any) -> MqttClient:
        """A client for already-resolved settings (address with credentials, TLS context)."""
        client = cls(None, s.client_id, clean_session=s.clean, keepalive=s.keepalive, protocol=s.protocol,
                     session_expiry_s=s.session_expiry_s, tls_context=s.tls_context,
                     tls_insecure=s.tls_insecure, **kwargs)
        client.address = s.address
        return client

    # ------------------------------------------------------------------ lifecycle
    @property
    def safe_url(self) -> str:
        a = self.address
        scheme = "mqtts" if self._tls_context is not None else "mqtt"
        return redact_url(self.url) if self.url else f"{scheme}://{a.host}:{a.port}"

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        return self._tls_context

    @property
    def online(self) -> bool:
        return self._online.is_set()

    @property
    def queued(self) -> int:
        """Outgoing messages waiting for the broker."""
        return len(self._out)

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start the connection task (``__aenter__`` does this)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"mqtt-client-{self.client_id}")

    async def close(self) -> None:
        """Flush the outgoing queue for up to ``close_timeout_s`` when online, then disconnect."""
        if self._task is None:
            return
        if self.online and self._out:
            await self.drain(self._close_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def wait_online(self, timeout_s: float | None = None) -> bool:
        """Wait until connected (and re-subscribed). False on timeout."""
        try:
            await asyncio.wait_for(self._online.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until the outgoing queue is empty (everything acknowledged). False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ public API
    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Register ``topic_filter``; it is (re-)subscribed on every connect (see :meth:`subscribe_all`)."""
        await self.subscribe_all([topic_filter], qos)

    async def subscribe_all(self, filters: Iterable[str], qos: int = 1) -> None:
        """Register ``filters``; they are (re-)subscribed on every connect. Online, this returns once
        the broker acknowledged them (SUBACK; up to 100 filters a packet). Offline, it returns at once:
        the connect sequence subscribes every registered filter before going online."""
        todo = list(dict.fromkeys(filters))
        self._filters.update(dict.fromkeys(todo, qos))
        client = self._client
        if client is None or not self.online:
            return
        for batch in _batches([f for f in todo if f not in self._subscribed]):
            self._subscribed.update(batch)
            try:
                await client.subscribe([(f, qos) for f in batch])
            except aiomqtt.MqttError as exc:  # the reconnect will subscribe them
                log.debug("subscribe %s (+%d) deferred: %s", batch[0], len(batch) - 1, exc)
                return

    async def unsubscribe(self, topic_filter: str) -> None:
        """Forget ``topic_filter`` (e.g. a device removed by discovery)."""
        await self.unsubscribe_all([topic_filter])

    async def unsubscribe_all(self, filters: Iterable[str]) -> None:
        """Forget ``filters``; online, this returns once the broker acknowledged (UNSUBACK)."""
        todo = list(dict.fromkeys(filters))
        for topic_filter in todo:
            self._filters.pop(topic_filter, None)
        client = self._client
        if client is None or not self.online:
            return
        for batch in _batches([f for f in todo if f in self._subscribed]):
            self._subscribed.difference_update(batch)
            try:
                await client.unsubscribe(batch)
            except aiomqtt.MqttError as exc:  # the next connect does not subscribe them again
                log.debug("unsubscribe %s (+%d) failed: %s", batch[0], len(batch) - 1, exc)
                return

    async def publish(self, topic: str, payload: Payload, qos: int = 1, retain: bool = False) -> None:
        """Queue a message; it is sent now if online, otherwise after the next connect."""
        if len(self._out) >= self._max_queued:
            self._out.popleft()
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 100 == 0:
                log.warning("MQTT %s: outgoing queue full (%d), dropped %d messages so far",
                            self.safe_url, self._max_queued, self.stats.dropped)
        self._out.append(_Outgoing(topic, encode_payload(payload), qos, retain))
        self._idle.clear()
        self._out_ready.set()

    async def messages(self) -> AsyncIterator[MqttMessage]:
        """Every received message, across reconnects, forever (until a refused login with
        ``fail_on_auth``: then :class:`AdapterAuthError`)."""
        while True:
            message = await self._in.get()
            if message is _STOPPED:
                self._in.put_nowait(_STOPPED)  # for the next reader too
                raise AdapterAuthError(f"MQTT {self.safe_url}: {self.auth_error}")
            yield message

    # ------------------------------------------------------------------ connection loop
    def _settings(self) -> ConnectSettings:
        return ConnectSettings(self.address, self.client_id, self.protocol, self.clean_session,
                               self.session_expiry_s, self.keepalive, self._publish_timeout,
                               self._tls_context, self._tls_insecure)

    def _make_client(self) -> aiomqtt.Client:
        return self._settings().client()

    async def probe(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Connect once beside the real session and disconnect (see :func:`adapters.mqtt_broker.probe`)."""
        return await probe(self._settings(), timeout_s)

    async def _run(self) -> None:
        failures = 0
        was_online = False
        while True:
            try:
                client = self._make_client()
                async with client:
                    self._client = client
                    self._subscribed = set()
                    # filters registered while this runs are picked up by the next pass
                    while pending := [(f, q) for f, q in self._filters.items() if f not in self._subscribed]:
                        for batch in _batches(pending):
                            self._subscribed.update(f for f, _ in batch)
                            await client.subscribe(batch)
                    self.stats.connects += 1
                    self.auth_error = None
                    self._online.set()
                    if failures:
                        log.info("MQTT %s online again (as %s) after %d failed attempts",
                                 self.safe_url, self.client_id, failures)
                    else:
                        log.info("MQTT connected to %s as %s", self.safe_url, self.client_id)
                    failures = 0
                    was_online = True
                    await self._session(client)
            except (aiomqtt.MqttError, OSError) as exc:
                self.last_error = redact_text(str(exc) or type(exc).__name__)
                if not was_online or failures:
                    refusal = auth_refusal(exc)
                    if refusal is None and self._tls_context is not None:
                        refusal = await tls_refusal(self.address.host, self.address.port, self._tls_context,
                                                    timeout_s=2.0)
                    if refusal is not None:
                        self._refused(refusal)
                        if self._fail_on_auth:
                            return
            except Exception as exc:  # a library bug must not end the hub's MQTT for good
                self.last_error = redact_text(f"{type(exc).__name__}: {exc}")
                log.exception("MQTT %s: unexpected error in the connection loop", self.safe_url)
            finally:
                self._online.clear()
                self._client = None
            failures += 1
            self.stats.connect_failures += 1
            if failures == 1:
                log.warning("MQTT %s offline (%s); reconnecting with backoff",
                            self.safe_url, self.last_error if not was_online else f"lost: {self.last_error}")
            else:
                log.debug("MQTT %s still offline (attempt %d): %s", self.safe_url, failures, self.last_error)
            await asyncio.sleep(self._backoff(failures))

    def _refused(self, reason: str) -> None:
        if self.auth_error is None:
            log.error("MQTT %s as %s: %s%s", self.safe_url, self.client_id, reason,
                      "; giving up" if self._fail_on_auth else "; still retrying")
        self.auth_error = self.last_error = reason
        if self._fail_on_auth:
            if self._in.full():
                self._in.get_nowait()
            self._in.put_nowait(_STOPPED)

    def _backoff(self, failures: int) -> float:
        delay = min(self._backoff_max, self._backoff_initial * 2 ** min(failures - 1, 16))
        return random.uniform(delay / 2, delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        forward = asyncio.create_task(self._forward(client), name=f"mqtt-in-{self.client_id}")
        sender = asyncio.create_task(self._sender(client), name=f"mqtt-out-{self.client_id}")
        try:
            done, _ = await asyncio.wait({forward, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (forward, sender):
                t.cancel()
            await asyncio.gather(forward, sender, return_exceptions=True)
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc
        raise aiomqtt.MqttError("session ended")

    async def _forward(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            raw = m.payload
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else (
                b"" if raw is None else str(raw).encode())
            self.stats.received += 1
            await self._in.put(MqttMessage(str(m.topic), payload, m.qos, m.retain))

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            while not self._out:
                self._idle.set()
                self._out_ready.clear()
                await self._out_ready.wait()
            batch = [self._out.popleft() for _ in range(min(len(self._out), 20))]
            confirmed = [False] * len(batch)
            self._sending = len(batch)
            try:
                results = await asyncio.gather(
                    *(self._publish_one(client, m, confirmed, i) for i, m in enumerate(batch)),
                    return_exceptions=True)
            finally:
                # Anything not acknowledged goes back to the front (at-least-once).
                failed = [m for i, m in enumerate(batch) if not confirmed[i]]
                self._out.extendleft(reversed(failed))
                self.stats.published += len(batch) - len(failed)
                self._sending = 0
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise aiomqtt.MqttError(f"publish failed: {errors[0]}")

    async def _publish_one(self, client: aiomqtt.Client, m: _Outgoing, confirmed: list[bool], i: int) -> None:
        await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, timeout=self._publish_timeout)
        confirmed[i] = True


def _batches(items: list[_T], size: int = SUBSCRIBE_BATCH) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
