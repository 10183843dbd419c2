"""ONVIF cameras (Profile S/T): streams, snapshot, device events and PTZ presets via onvif-zeep-async.

Configuration::

    cameras:
      - id: gate
        kind: onvif
        host: 10.0.0.5
        port: 80
        username: admin
        password: ${GATE_PASSWORD}      # WS-Security digest; also put into the RTSP URLs
        # main_profile: Profile_1       # default: the highest-resolution profile (viewing, evidence)
        # sub_profile: Profile_2        # default: the smallest profile (detection)
        transport: tcp
        events: true                    # PullPoint: motion, tamper, video loss, line crossing, field
        ptz_presets: {gate: "1"}        # optional names for preset tokens

What it does: connects with a UsernameToken PasswordDigest, correcting for the camera's clock offset
(GetSystemDateAndTime), reads the device information and media profiles, returns the main and sub
RTSP URIs (credentials in the user-info) and the snapshot URI, streams device events from a PullPoint
subscription (:mod:`adapters.onvif_events`) and moves the camera to PTZ presets::

    await camera.command("goto_preset", preset="gate")   # a name or a token
    await camera.command("presets")                      # {"profile": ..., "presets": [{token, name}]}

``probe()``, ``streams()`` and ``command()`` work with or without ``async with`` (outside it they
open a short-lived connection). Errors: credentials refused → AdapterAuthError; refused/timed out →
AdapterConnectError; the device answers but is not ready (HTTP 503, missing services, faults) →
AdapterNotReady; no PTZ → AdapterUnsupported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from adapters.base import Adapter, AdapterContext, Capability, DeviceInfo, StreamSet, StreamUri
from adapters.camera import CameraBase
from adapters.generic import with_credentials
from adapters.onvif_client import OnvifSession, Profile
from adapters.onvif_events import EventMapper, PullSettings, SubscriptionStats, pull_events
from adapters.registry import register
from hub.errors import AdapterError, AdapterNotReady, AdapterUnsupported
from hub.events import SourceEvent

log = logging.getLogger(__name__)


class OnvifCameraConfig(CameraBase):
    """An ONVIF camera (or NVR channel) reached over its device service."""

    kind: Literal["onvif"] = Field(..., description="onvif")
    host: str = Field(..., min_length=1, description="Host name or IP address of the device service.")
    port: int = Field(80, ge=1, le=65535, description="HTTP port of the device service.")
    username: str | None = Field(None, description="ONVIF user (WS-Security UsernameToken).")
    password: SecretStr | None = Field(None, description="ONVIF password (never logged).")
    main_profile: str | None = Field(
        None, description="Profile token for viewing and evidence; default: the highest-resolution profile.")
    sub_profile: str | None = Field(
        None, description="Profile token for detection; default: the smallest profile (none if the device "
        "has a single profile: detection then reads the main stream).")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport for both streams.")
    rtsp_credentials: bool = Field(
        True, description="Put username/password into the RTSP and snapshot URLs (most cameras ask for "
        "the ONVIF account there too).")
    events: bool = Field(True, description="Subscribe to the device's events (PullPoint).")
    ptz_presets: dict[str, str] = Field(
        default_factory=dict, description="Preset names → PTZ preset tokens (device preset names work too).")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of each SOAP request.")
    adjust_time: bool = Field(
        True, description="Correct for the camera's clock offset when signing requests (read the device "
        "clock first); turn off only for devices that refuse unauthenticated GetSystemDateAndTime.")
    subscription_s: float = Field(
        60.0, ge=1, le=86400, description="Requested PullPoint subscription lifetime; renewed at 80 %.")
    pull_timeout_s: float = Field(10.0, gt=0, le=60, description="PullMessages long-poll time.")
    resubscribe_max_s: float = Field(30.0, ge=1, le=3600,
                                     description="Longest wait between re-subscription attempts.")

    @field_validator("host")
    @classmethod
    def _bare_host(cls, host: str) -> str:
        host = host.strip()
        if "/" in host.removeprefix("http://").removeprefix("https://") or any(c.isspace() for c in host):
            raise ValueError("give the device's host name or IP address (no path; the port goes in port:)")
        return host


def select_profiles(profiles: list[Profile], main_token: str | None,
                    sub_token: str | None) -> tuple[Profile, Profile | None]:
    """(main, sub): explicit tokens, else the largest and the smallest profile (sub ``None`` if same)."""
    by_token = {p.token: p for p in profiles}

    def pick(token: str) -> Profile:
        if token not in by_token:
            raise AdapterNotReady(f"no media profile {token!r}; the device has {sorted(by_token)}")
        return by_token[token]

    main = pick(main_token) if main_token else max(profiles, key=lambda p: p.area)
    sub = pick(sub_token) if sub_token else min(profiles, key=lambda p: p.area)
    return main, (None if sub.token == main.token else sub)


@register
class OnvifCamera(Adapter[OnvifCameraConfig]):
    """An ONVIF camera: RTSP main/sub streams, snapshot, PullPoint events, PTZ presets."""

    config_model = OnvifCameraConfig
    capabilities = frozenset({Capability.STREAMS, Capability.SNAPSHOT, Capability.EVENTS, Capability.PTZ})
    commands = frozenset({"goto_preset", "presets"})
    description = "ONVIF camera: profiles → main/sub RTSP, snapshot, PullPoint events, PTZ presets"

    def __init__(self, config: OnvifCameraConfig, context: AdapterContext | None = None) -> None:
        super().__init__(config, context)
        self._session: OnvifSession | None = None
        self._event_sessions: set[OnvifSession] = set()
        self._event_stats = SubscriptionStats()
        self._info: DeviceInfo | None = None
        self._streams: StreamSet | None = None
        self._clock_offset_s: float | None = None
        self._probe_ms: float | None = None
        self._closed = False  # close() ends events(); start() clears it

    # -- connections ----------------------------------------------------------------------------
    async def _open(self, label: str | None = None) -> OnvifSession:
        c = self.config
        password = c.password.get_secret_value() if c.password is not None else None
        session = OnvifSession(c.host, c.port, c.username, password, timeout_s=c.timeout_s,
                               adjust_time=c.adjust_time, label=label or f"onvif {self.id}")
        try:
            await session.open()
        except BaseException:
            await session.close()
            raise
        self._clock_offset_s = session.clock_offset_s
        return session

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[OnvifSession]:
        """The adapter's live session inside ``async with``; a short-lived one outside it."""
        if self._session is not None:
            yield self._session
            return
        session = await self._open()
        try:
            yield session
        finally:
            await session.close()

    async def start(self) -> None:
        self._closed = False
        if self._session is None:
            session = await self._open()
            self._session = session
            await session.device_info()  # the credentials are checked by an authenticated call

    async def close(self) -> None:
        self._closed = True
        sessions = [s for s in (self._session, *self._event_sessions) if s is not None]
        self._session = None
        self._event_sessions.clear()
        for session in sessions:
            await session.close()

    # -- probe and streams --------------------------------------------------------------------
    async def probe(self) -> DeviceInfo:
        t0 = time.perf_counter()
        async with self._connected() as s:
            info = await s.device_info()
            profiles = await s.profiles()
            main, sub = select_profiles(profiles, self.config.main_profile, self.config.sub_profile)
            snapshot = await s.snapshot_uri(main.token)
            services, clock_offset_s = s.services, s.clock_offset_s
        caps = {Capability.STREAMS}
        if snapshot:
            caps.add(Capability.SNAPSHOT)
        if "events" in services and self.config.events:
            caps.add(Capability.EVENTS)
        if "ptz" in services:
            caps.add(Capability.PTZ)
        self._probe_ms = round((time.perf_counter() - t0) * 1000, 1)
        self._info = DeviceInfo(
            id=self.id, kind=self.config.kind, capabilities=frozenset(caps),
            manufacturer=info["Manufacturer"], model=info["Model"], firmware=info["FirmwareVersion"],
            serial=info["SerialNumber"],
            extra={"host": self.config.host, "port": self.config.port, "hardware_id": info["HardwareId"],
                   "services": services, "profiles": [p.to_json() for p in profiles],
                   "main_profile": main.token, "sub_profile": sub.token if sub else None,
                   "clock_offset_s": clock_offset_s, "probe_ms": self._probe_ms},
        )
        return self._info

    def _with_credentials(self, url: str) -> str:
        c = self.config
        return with_credentials(url, c.username, c.password) if c.rtsp_credentials else url

    def _stream(self, url: str, profile: Profile) -> StreamUri:
        return StreamUri(self._with_credentials(url), transport=self.config.transport,
                         width=profile.width or None, height=profile.height or None,
                         codec=profile.encoding.lower() or None, profile=profile.token)

    async def streams(self) -> StreamSet:
        async with self._connected() as s:
            main, sub = select_profiles(await s.profiles(), self.config.main_profile, self.config.sub_profile)
            main_url = await s.stream_uri(main.token)
            sub_url = await s.stream_uri(sub.token) if sub is not None else None
            snapshot = await s.snapshot_uri(main.token)
        self._streams = StreamSet(
            main=self._stream(main_url, main),
            sub=self._stream(sub_url, sub) if sub is not None and sub_url else None,
            snapshot=self._with_credentials(snapshot) if snapshot else None,
        )
        return self._streams

    # -- events -------------------------------------------------------------------------------
    def events(self) -> AsyncIterator[SourceEvent]:
        if not self.config.events:
            return self._no_events()
        c = self.config
        settings = PullSettings(subscription_s=c.subscription_s, pull_timeout_s=c.pull_timeout_s,
                                retry_max_s=c.resubscribe_max_s)
        mapper = EventMapper(self.id, c.grid, self._event_stats)
        return pull_events(self._open_events, self._release_events, mapper, settings, f"onvif {self.id}")

    async def _no_events(self) -> AsyncIterator[SourceEvent]:
        self._event_stats.state = "disabled"
        await asyncio.Event().wait()  # events: false — nothing, until cancelled
        return
        yield  # makes this an async generator

    async def _open_events(self) -> OnvifSession | None:
        if self._closed:
            return None
        session = await self._open(f"onvif {self.id} events")
        self._event_sessions.add(session)
        return session

    async def _release_events(self, session: OnvifSession) -> None:
        self._event_sessions.discard(session)
        await session.close()

    # -- PTZ ----------------------------------------------------------------------------------
    async def command(self, name: str, **args: Any) -> dict[str, Any]:
        if name not in self.commands:
            return await super().command(name, **args)
        async with self._connected() as s:
            if not s.has("ptz"):
                raise AdapterUnsupported(f"onvif {self.id}: the device has no PTZ service")
            profiles = await s.profiles()
            main, _ = select_profiles(profiles, self.config.main_profile, self.config.sub_profile)
            profile = next((p for p in profiles if p.ptz), main)
            presets = await s.presets(profile.token)
            if name == "presets":
                return {"profile": profile.token, "presets": [{"token": t, "name": n} for t, n in presets]}
            token = self._preset_token(args.get("preset"), presets)
            await s.goto_preset(profile.token, token)
        log.info("onvif %s: PTZ to preset %s", self.id, token)
        return {"profile": profile.token, "preset": token, "name": dict(presets).get(token, "")}

    def _preset_token(self, preset: object, presets: list[tuple[str, str]]) -> str:
        if not isinstance(preset, str | int) or str(preset) == "":
            raise AdapterError(f"onvif {self.id}: goto_preset needs preset=<name or token>")
        wanted = str(preset)
        if wanted in self.config.ptz_presets:
            return self.config.ptz_presets[wanted]
        for token, _ in presets:
            if token == wanted:
                return token
        for token, preset_name in presets:
            if preset_name.casefold() == wanted.casefold():
                return token
        known = sorted({*self.config.ptz_presets, *(n or t for t, n in presets)})
        raise AdapterError(f"onvif {self.id}: no PTZ preset {wanted!r}; known: {', '.join(known) or 'none'}")

    # -- diagnostics --------------------------------------------------------------------------
    def diagnostics(self) -> dict[str, Any]:
        out = super().diagnostics()
        out.update({
            "connected": self._session is not None,
            "clock_offset_s": self._session.clock_offset_s if self._session else self._clock_offset_s,
            "probe_ms": self._probe_ms,
            "device": self._info.to_json() if self._info is not None else None,
            "streams": self._streams.to_json() if self._streams is not None else None,
            "events": self._event_stats.to_json(),
        })
        return out
