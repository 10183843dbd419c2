"""The ``mqtt`` source: door contacts, smart locks and village systems on an MQTT broker.

Configuration only; the dialect says how the devices talk::

    sources:
      - kind: mqtt
        id: village-a
        grid: "440105001001"
        url: mqtts://broker.village-a:8883     # omitted: the hub's own broker (in a session of its own)
        protocol: "5"                           # or "3.1.1"
        tls: {ca_file: /etc/hub/ca.crt, cert_file: /etc/hub/hub.crt, key_file: /etc/hub/hub.key}
        username: hub
        password: ${VILLAGE_A_MQTT_PASSWORD}
        dialect: zigbee2mqtt                    # json, tasmota, homeassistant or mapping
        devices:
          - {id: lock-3, kind: smart_lock, topic: zigbee2mqtt/lock-3}
          - {id: door-3, kind: door_contact, topic: zigbee2mqtt/door-3, lock: lock-3, cameras: [cam-3]}

``homeassistant`` finds devices by MQTT discovery (``devices`` only lends ids, grids, cameras and lock
links to discovered ones, matched by ``topic`` = the HA device identifier); ``mapping`` describes a
village system's own format with :class:`adapters.dialects.mapping.MappingRule` s. Discovered and
``auto_devices`` devices stop at ``max_devices`` (2,000): anyone who can publish on the broker could
otherwise create devices without end. The session is
persistent (QoS 1, MQTT 5 session expiry) so nothing published while the hub restarts is lost; the
client id defaults to ``<hub client id>-<source id>``. Events: door opened/closed/held open/forced,
tamper, lock unlocked (with the method) and locked, repeated failed attempts, low battery, device
offline/online. Device status rows go to ``AdapterContext.on_status``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from adapters.base import ID_PATTERN, Adapter, AdapterConfig, AdapterContext, Capability, DeviceInfo
from adapters.dialects import DeviceKind, DeviceSpec, Dialect, TopicDialect, json_events, zigbee2mqtt
from adapters.dialects.homeassistant import HomeAssistant
from adapters.dialects.mapping import MappingDialect, MappingRule
from adapters.dialects.tasmota import Tasmota
from adapters.mqtt_broker import (
    BrokerAddress,
    ConnectSettings,
    parse_mqtt_url,
    probe,
    tls_context_from_files,
)
from adapters.mqtt_client import MqttClient
from adapters.mqtt_devices import DeviceHub
from adapters.registry import register
from hub.errors import AdapterAuthError, AdapterError, AdapterNotReady, ConfigError
from hub.events import SourceEvent

log = logging.getLogger(__name__)

DialectName = Literal["zigbee2mqtt", "json", "tasmota", "homeassistant", "mapping"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Strict):
    ca_file: Path | None = Field(None, description="CA of the broker's certificate (else the system CAs).")
    cert_file: Path | None = Field(None, description="Client certificate (brokers with require_certificate).")
    key_file: Path | None = Field(None, description="Client private key (PEM).")
    key_password: SecretStr | None = Field(None, description="Password of an encrypted key_file.")
    insecure: bool = Field(False, description="Do not verify the broker's certificate (test benches only).")

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


class TasmotaSettings(_Strict):
    full_topic: str = Field("%prefix%/%topic%/", description="Tasmota FullTopic.")
    door_switch: str = Field("Switch1", description="The switch input wired to the door contact.")
    open_state: Literal["ON", "OFF"] = Field("ON", description="Switch state that means the door is open.")
    tamper_switch: str | None = Field(None, description="A switch input wired to a tamper contact.")
    relay: str = Field("POWER", description="The relay driving a smart lock's strike (ON = unlocked).")


class MqttDevice(_Strict):
    id: str = Field(..., pattern=ID_PATTERN, description="Stable device id (unique in the hub).")
    name: str = Field("", description="Display name.")
    kind: DeviceKind | None = Field(None, description="door_contact or smart_lock (default door_contact; "
                                    "homeassistant: from discovery).")
    grid: str = Field("", description="Grid code (default: the source's grid).")
    topic: str = Field("", description="zigbee2mqtt/json: the device topic; tasmota: its %topic%; "
                       "homeassistant: the HA device identifier; mapping: unused.")
    cameras: list[str] = Field(default_factory=list, description="Cameras that see this door.")
    lock: str | None = Field(None, description="The smart lock securing this door (forced-door detection).")
    offline_after_s: float | None = Field(None, ge=0, description="Offline after this much silence "
                                          "(default: the source's offline_after_s).")


class MqttSourceConfig(AdapterConfig):
    """Door contacts, smart locks and village systems on one MQTT broker, in one dialect."""

    kind: Literal["mqtt"] = Field(..., description="mqtt")
    url: str | None = Field(None, description="mqtt://host:1883 or mqtts://host:8883 (credentials may be "
                            "in the URL). Empty: the hub's own broker (outside a hub: 127.0.0.1:1883).")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version.")
    tls: TlsSettings | None = Field(None, description="TLS (implied by mqtts://).")
    username: str | None = Field(None, description="User name (overrides the URL's).")
    password: SecretStr | None = Field(None, description="Password (never logged).")
    client_id: str | None = Field(None, max_length=64, description="Client id; default <hub id>-<source id>.")
    clean_session: bool = Field(False, description="False: persistent session, nothing lost on restart.")
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0, description="MQTT 5: how long the broker keeps "
                                  "our session while we are away.")
    keepalive: int = Field(30, ge=5, le=3600, description="Keepalive seconds.")
    dialect: DialectName = Field("zigbee2mqtt", description="How the devices talk.")
    discovery_prefix: str = Field("homeassistant", description="homeassistant: the discovery prefix.")
    discovery: Literal["all", "configured"] = Field("all", description="homeassistant: accept every "
                                                    "discovered device, or only those listed in devices.")
    tasmota: TasmotaSettings = Field(default_factory=TasmotaSettings, description="tasmota options.")
    mapping: list[MappingRule] = Field(default_factory=list, description="mapping: the rules.")
    max_devices: int = Field(2000, ge=1, description="homeassistant / mapping auto_devices: at most this "
                             "many devices (configured ones always count and are always accepted); "
                             "messages about one more are counted as unknown_device and logged once.")
    devices: list[MqttDevice] = Field(default_factory=list, description="The devices (see dialect).")
    offline_after_s: float = Field(0, ge=0, description="Default silence before a device is offline "
                                   "(0 = only availability/LWT messages say so).")
    held_open_s: float | None = Field(None, gt=0, description="Door held open this long is reported "
                                      "(default: alerts.held_open_s).")
    forced_window_s: float = Field(10, gt=0, description="An opening this soon after an unlock is normal.")
    failed_attempts: int = Field(3, ge=1, description="Failed unlocks within failed_window_s reported.")
    failed_window_s: float = Field(60, gt=0, description="Window for counting failed unlocks.")
    queue: int = Field(1000, ge=1, description="Events buffered for a slow consumer (oldest dropped).")

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: Any) -> Any:
        return {5: "5", 311: "3.1.1", 3.1: "3.1.1", "311": "3.1.1"}.get(value, value)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url:
            try:
                parse_mqtt_url(url)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return url

    @model_validator(mode="after")
    def _devices(self) -> MqttSourceConfig:
        ids = [d.id for d in self.devices]
        if dup := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"device ids must be unique: {dup}")
        for d in self.devices:
            if d.lock is not None and d.lock not in ids:
                raise ValueError(f"device {d.id!r} links unknown lock {d.lock!r}")
            if self.dialect in ("zigbee2mqtt", "json", "tasmota") and not d.topic:
                raise ValueError(f"device {d.id!r} needs a topic with dialect {self.dialect}")
        if self.dialect == "mapping" and not self.mapping:
            raise ValueError("dialect mapping needs mapping rules")
        return self


@register
class MqttSource(Adapter[MqttSourceConfig]):
    """Decodes devices on an MQTT broker into typed events (see the module docstring)."""

    config_model = MqttSourceConfig
    capabilities = frozenset({Capability.EVENTS})
    description = ("Door contacts, smart locks, village systems on MQTT 3.1.1/5 (Zigbee2MQTT, JSON, Tasmota, "
                   "Home Assistant discovery, declarative mapping); TLS client certificates")

    def __init__(self, config: MqttSourceConfig, context: AdapterContext | None = None) -> None:
        super().__init__(config, context)
        self.client: MqttClient | None = None
        self.hub: DeviceHub | None = None
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[SourceEvent | None] | None = None
        self.dropped = 0

    # ------------------------------------------------------------------ connection settings
    async def _settings(self) -> ConnectSettings:
        c, shared = self.config, self.context.mqtt
        if c.url is None and shared is not None:  # the hub's broker, in a session of our own
            address, tls = shared.address, shared.tls_context
            base_id = shared.client_id
        else:
            address, tls, base_id = parse_mqtt_url(c.url), None, "sanwang-hub"
        if c.tls is not None:
            t = c.tls
            secret = t.key_password.get_secret_value() if t.key_password else None
            try:
                tls = await asyncio.to_thread(tls_context_from_files, t.ca_file, t.cert_file, t.key_file,
                                              key_password=secret, insecure=t.insecure)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise AdapterAuthError(f"{self.id}: cannot load the TLS files: {exc}") from None
        elif address.tls and tls is None:
            tls = await asyncio.to_thread(ssl.create_default_context)
        if c.username is not None or c.password is not None:
            password = c.password.get_secret_value() if c.password is not None else address.password
            address = BrokerAddress(address.host, address.port, c.username or address.username, password,
                                    address.tls)
        return ConnectSettings(address, c.client_id or f"{base_id}-{self.id}"[:64],
                               5 if c.protocol == "5" else 311, c.clean_session, c.session_expiry_s,
                               c.keepalive, 10.0, tls, bool(c.tls and c.tls.insecure))

    def _specs(self) -> list[DeviceSpec]:
        c = self.config
        return [DeviceSpec(id=d.id, kind=d.kind or "door_contact", topic=d.topic, dialect=c.dialect,
                           name=d.name, grid=d.grid or c.grid, cameras=tuple(d.cameras), lock=d.lock,
                           offline_after_s=c.offline_after_s if d.offline_after_s is None
                           else d.offline_after_s, source=self.id)
                for d in c.devices]

    def dialect(self) -> tuple[Dialect, list[DeviceSpec]]:
        """The dialect, and the devices that exist before any message (discovered ones come later)."""
        c, specs = self.config, self._specs()
        defaults = DeviceSpec(id="-", kind="door_contact", dialect=c.dialect, grid=c.grid,
                              offline_after_s=c.offline_after_s, source=self.id)
        if c.dialect == "zigbee2mqtt":
            return TopicDialect(specs, zigbee2mqtt.decode, c.dialect), specs
        if c.dialect == "json":
            return TopicDialect(specs, json_events.decode, c.dialect), specs
        if c.dialect == "tasmota":
            return Tasmota(specs, **c.tasmota.model_dump()), specs
        if c.dialect == "homeassistant":
            return HomeAssistant(specs, prefix=c.discovery_prefix, accept=c.discovery, defaults=defaults,
                                 max_devices=c.max_devices), []
        return MappingDialect(c.mapping, specs, defaults=defaults, max_devices=c.max_devices), specs

    # ------------------------------------------------------------------ lifecycle
    async def probe(self) -> DeviceInfo:
        info = await probe(await self._settings())
        c = self.config
        return DeviceInfo(self.id, "mqtt", self.capabilities, model=info.get("version") or "MQTT broker",
                          extra={**info, "dialect": c.dialect, "devices": len(c.devices)})

    async def start(self) -> None:
        if self._task is not None:
            return
        s = await self._settings()
        self.client = MqttClient.from_settings(s, fail_on_auth=True)
        self._queue = asyncio.Queue(self.config.queue + 1)
        dialect, devices = self.dialect()
        c = self.config
        held = c.held_open_s or float(self.context.options.get("held_open_s", 120.0))
        self.hub = DeviceHub(devices, None, self.client, self.context.metrics, dialects=[dialect],
                             on_event=self._offer, on_status=self.context.on_status, held_open_s=held,
                             forced_window_s=c.forced_window_s, failed_attempts=c.failed_attempts,
                             failed_window_s=c.failed_window_s)
        self.client.start()
        self._task = asyncio.create_task(self.hub.run(), name=f"mqtt-source:{self.id}")
        self._task.add_done_callback(self._stopped)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # its failure was reported by events()
        client, self.client = self.client, None
        if client is not None:
            await client.close()

    async def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """Started, connected and subscribed (tests and the conformance trigger use this)."""
        if self.hub is None or self.client is None:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await self.hub.ready.wait()
                await self.client.wait_online()
        except TimeoutError:
            return False
        return True

    def _offer(self, event: SourceEvent) -> None:
        q = self._queue
        if q is None:
            return
        if q.qsize() >= self.config.queue:  # a slow consumer loses the oldest, the decoder never waits
            q.get_nowait()
            self.dropped += 1
        q.put_nowait(event)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if self._queue is not None and not task.cancelled():
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[SourceEvent]:
        queue, task = self._queue, self._task
        if queue is None or task is None:
            raise AdapterNotReady(f"mqtt source {self.id!r}: use `async with adapter:` before events()")
        while True:
            event = await queue.get()
            if event is None:
                queue.put_nowait(None)
                raise _failure(self.id, task)
            yield event

    def diagnostics(self) -> dict[str, Any]:
        out = super().diagnostics()
        if self.client is not None and self.hub is not None:
            out.update(connected=self.client.online, session=self.client.client_id,
                       last_error=self.client.last_error, counts=dict(self.hub.counts),
                       devices=len(self.hub.devices), dropped_events=self.dropped)
        return out


def _failure(source_id: str, task: asyncio.Task[None]) -> AdapterError:
    exc: BaseException | None = task.exception() if task.done() and not task.cancelled() else None
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, AdapterError):
        return exc
    return AdapterError(f"mqtt source {source_id!r} stopped: {type(exc).__name__}: {exc}")
