"""Where an MQTT broker is and whether it lets us in: URLs, TLS contexts, refused logins.

Shared by :mod:`adapters.mqtt_client` (the reconnecting client) and :mod:`adapters.mqtt` (the source
adapter's ``probe()``). Nothing here logs or returns a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.errors import AdapterAuthError, AdapterConnectError, ConfigError
from hub.redact import redact_text, redact_url


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    tls: bool


def parse_mqtt_url(url: str | None) -> BrokerAddress:
    """Parse ``mqtt://user:pass@host:1883`` or ``mqtts://...`` (``None`` = local broker on 1883)."""
    if not url:
        return BrokerAddress("127.0.0.1", 1883, None, None, tls=False)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid MQTT URL {redact_url(url)!r}: {exc}", field="mqtt.url") from None
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(
            f"unsupported MQTT URL scheme {parts.scheme!r}", field="mqtt.url",
            hint="use mqtt://user:pass@host:1883 or mqtts://host:8883",
        )
    if not parts.hostname:
        raise ConfigError(f"MQTT URL {redact_url(url)!r} has no host", field="mqtt.url")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
    )


#: CONNACK codes that mean "your credentials were refused" (3.1.1: 4, 5; MQTT 5: 0x86, 0x87, 0x8C).
AUTH_REFUSED = frozenset({4, 5, 134, 135, 140})
#: TLS alerts a broker sends when it rejects our client certificate (or we sent none).
CERT_REFUSED = ("CERTIFICATE_REQUIRED", "UNKNOWN_CA", "BAD_CERTIFICATE", "HANDSHAKE_FAILURE",
                "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED", "ACCESS_DENIED")


def auth_refusal(exc: BaseException) -> str | None:
    """Why the broker refused our credentials, if ``exc`` says so."""
    rc = getattr(exc, "rc", None)
    code = getattr(rc, "value", rc)
    if isinstance(exc, aiomqtt.MqttCodeError) and code in AUTH_REFUSED:
        return f"the broker refused the login ({rc})"
    text = str(exc).upper()
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS: the broker's certificate is not trusted ({redact_text(str(exc))[:200]})"
    if isinstance(exc, ssl.SSLError | aiomqtt.MqttError) and any(a in text for a in CERT_REFUSED):
        return f"TLS: the broker refused our client certificate ({redact_text(str(exc))[:200]})"
    return None


async def tls_refusal(host: str, port: int, context: ssl.SSLContext, timeout_s: float = 5.0) -> str | None:
    """After a failed MQTT connect over TLS: did the TLS layer refuse us? (Brokers that require a client
    certificate send the alert only after the handshake, so the MQTT library just sees a timeout.)"""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), timeout_s)
    except (OSError, TimeoutError) as exc:
        return auth_refusal(exc)
    try:
        await asyncio.wait_for(reader.read(1), min(1.0, timeout_s))
    except TimeoutError:
        return None  # the broker waits for CONNECT: TLS is fine
    except OSError as exc:
        return auth_refusal(exc)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    return None




def tls_context_from_files(
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    *,
    key_password: str | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    """A client TLS context: trust ``ca_file`` (else the system CAs), present ``cert_file``/``key_file``.

    ``insecure`` skips verifying the broker's certificate and host name (test benches only). Reads
    files: call it in a thread (``asyncio.to_thread``).
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None, password=key_password)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class ConnectSettings:
    """Everything needed to open one MQTT connection."""

    address: BrokerAddress
    client_id: str
    protocol: Literal[311, 5] = 311
    clean: bool = False
    session_expiry_s: int = 7 * 24 * 3600
    keepalive: int = 30
    timeout_s: float = 10.0
    tls_context: ssl.SSLContext | None = None
    tls_insecure: bool = False

    @property
    def safe_url(self) -> str:
        a = self.address
        return f"{'mqtts' if self.tls_context is not None else 'mqtt'}://{a.host}:{a.port}"

    def client(self) -> aiomqtt.Client:
        """An aiomqtt client (MQTT 5: ``clean_start`` + a session expiry when the session persists)."""
        a = self.address
        kwargs: dict[str, Any] = {}
        if self.protocol == 5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if not self.clean:
                props.SessionExpiryInterval = self.session_expiry_s
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=self.clean, properties=props)
        else:
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=self.clean)
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, tls_insecure=self.tls_insecure or None)
        return aiomqtt.Client(
            a.host, a.port, username=a.username, password=a.password, identifier=self.client_id,
            keepalive=self.keepalive, timeout=self.timeout_s, **kwargs,
        )


async def probe(settings: ConnectSettings, timeout_s: float = 5.0) -> dict[str, Any]:
    """Connect once as ``<client_id>-probe`` with a clean session (the real session is untouched), read
    the broker's ``$SYS/broker/version`` if it publishes one, and disconnect.

    Raises :class:`AdapterAuthError` (login or client certificate refused, broker certificate not
    trusted) or :class:`AdapterConnectError` (unreachable, timeout).
    """
    s = ConnectSettings(settings.address, f"{settings.client_id}-probe"[:64], settings.protocol, True,
                        settings.session_expiry_s, settings.keepalive, timeout_s, settings.tls_context,
                        settings.tls_insecure)
    t0 = time.monotonic()
    version: str | None = None
    client = s.client()
    try:
        async with asyncio.timeout(timeout_s + 1.0), client:
            connect_ms = round((time.monotonic() - t0) * 1000)
            with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
                await client.subscribe("$SYS/broker/version", qos=0)
                async with asyncio.timeout(0.3):
                    async for m in client.messages:
                        raw = m.payload
                        version = (bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw).encode()
                                   ).decode(errors="replace")[:80]
                        break
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        refusal = auth_refusal(exc)
        if refusal is None and s.tls_context is not None:
            refusal = await tls_refusal(s.address.host, s.address.port, s.tls_context, timeout_s)
        if refusal is not None:
            raise AdapterAuthError(f"MQTT {s.safe_url}: {refusal}") from None
        reason = redact_text(str(exc) or type(exc).__name__)
        raise AdapterConnectError(f"MQTT {s.safe_url} unreachable: {reason}") from None
    return {"broker": s.safe_url, "version": version, "connect_ms": connect_ms,
            "protocol": "5" if s.protocol == 5 else "3.1.1", "tls": s.tls_context is not None}
