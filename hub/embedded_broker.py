"""An in-process MQTT 3.1.1 broker (amqtt) for the demo and for machines without Mosquitto.

``async with EmbeddedBroker() as url:`` starts a broker on a free loopback port and yields its
``mqtt://`` URL; leaving the block shuts it down and closes the listener. ``stop()`` and ``start()``
can be called again on the same object: the broker comes back on the same port (tests use this to
simulate a broker restart).

amqtt treats every anonymous client as having no persistent session. The broker only listens on
loopback, so it uses :class:`LoopbackAuthPlugin`, which accepts every client *without* marking it
anonymous; persistent sessions (``clean_session=False``) then keep QoS 1 messages while the hub's
client reconnects, exactly like Mosquitto does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from hub.errors import EmbeddedServiceError

log = logging.getLogger(__name__)

_amqtt_log = logging.getLogger("amqtt")
if _amqtt_log.level == logging.NOTSET:  # amqtt logs every connection at INFO
    _amqtt_log.setLevel(logging.WARNING)
_transitions_log = logging.getLogger("transitions")
if _transitions_log.level == logging.NOTSET:
    _transitions_log.setLevel(logging.WARNING)


try:  # amqtt is a hard dependency, but keep the plugin definition importable for type checkers
    from amqtt.plugins.base import BaseAuthPlugin
except ImportError:  # pragma: no cover
    BaseAuthPlugin = object


class LoopbackAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept every client without flagging it anonymous (so persistent sessions work)."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Any) -> bool:
        return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """amqtt broker on ``host:port`` (port 0 = pick a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, session_expiry_s: int = 24 * 3600) -> None:
        self.host = host
        self.port = port
        self.session_expiry_s = session_expiry_s
        self._broker: Any = None

    @property
    def url(self) -> str:
        if not self.port:
            raise EmbeddedServiceError("the embedded MQTT broker has not been started")
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> str:
        """Start listening; returns the ``mqtt://`` URL."""
        if self._broker is not None:
            return self.url
        from amqtt.broker import Broker

        attempts = 5 if self.port == 0 else 1
        last: Exception | None = None
        for _ in range(attempts):
            port = self.port or _free_port(self.host)
            config: dict[str, Any] = {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{port}"}},
                "session_expiry_interval": self.session_expiry_s,
                "plugins": {f"{__name__}.LoopbackAuthPlugin": {}},
            }
            broker = Broker(config)
            try:
                await broker.start()
            except Exception as exc:  # amqtt wraps bind errors in BrokerError
                last = exc
                continue
            self._broker = broker
            self.port = port
            log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) listening on %s", self.url)
            return self.url
        raise EmbeddedServiceError(
            f"embedded MQTT broker could not listen on {self.host}:{self.port}: {last}")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Shut down; every client is disconnected and the listening socket is closed."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        try:
            await asyncio.wait_for(broker.shutdown(), timeout_s)
        except TimeoutError:
            log.warning("embedded MQTT broker did not shut down within %.1fs; closing its listener",
                        timeout_s)
        finally:
            for server in list(getattr(broker, "_servers", {}).values()):
                instance = getattr(server, "instance", None)
                if instance is not None:
                    instance.close()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(instance.wait_closed(), 0.5)
        log.info("embedded MQTT broker on %s:%d stopped", self.host, self.port)
