"""One connection to an ONVIF device: onvif-zeep-async behind the hub's errors and timeouts.

:class:`OnvifSession` opens an ``onvif.ONVIFCamera`` (WS-Security UsernameToken with
PasswordDigest; with ``adjust_time`` the device clock is read first with an unauthenticated
GetSystemDateAndTime and every ``Created`` timestamp is shifted by that offset, so cameras whose
clock is hours off still accept us), discovers the service addresses, and wraps the few
operations the adapter needs. Every call runs under a timeout, and every library error
(zeep faults and transport errors, aiohttp, ONVIFError) leaves as one of the hub's
:class:`~hub.errors.AdapterError` s via :func:`map_error`; nothing of zeep or aiohttp escapes.

The library is imported on first use in a worker thread (it takes ~0.7 s and parses nothing
on the loop afterwards: its WSDL documents load in an executor and are cached process-wide);
its import-time ``logging.basicConfig`` is undone so it never configures the hub's logging.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from hub.errors import AdapterAuthError, AdapterConnectError, AdapterError, AdapterNotReady
from hub.redact import redact_text

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_NS = {
    "devicemgmt": "http://www.onvif.org/ver10/device/wsdl",
    "media": "http://www.onvif.org/ver10/media/wsdl",
    "events": "http://www.onvif.org/ver10/events/wsdl",
    "ptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "imaging": "http://www.onvif.org/ver20/imaging/wsdl",
    "analytics": "http://www.onvif.org/ver20/analytics/wsdl",
}
PULLPOINT_NS = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"
_AUTH_SUBCODES = {"NotAuthorized", "FailedAuthentication", "InvalidSecurity", "InvalidSecurityToken"}
_AUTH_TEXT = re.compile(r"not ?authori[sz]ed|unauthori[sz]ed|authenticat|password|credential", re.IGNORECASE)

try:  # checked at import (cheap) so a missing library shows in the registry's load failures
    importlib.metadata.version("onvif-zeep-async")
except importlib.metadata.PackageNotFoundError as exc:
    raise ImportError("the ONVIF adapter needs the onvif-zeep-async package (>= 4.3)") from exc

_RESYNC_MIN_S = 5.0  # re-read the device clock after an auth fault at most this often

_lib: Any = None
_lib_lock = threading.Lock()


def _import_library() -> Any:
    global _lib  # noqa: PLW0603 - a lazily imported module, once per process
    with _lib_lock:
        if _lib is None:
            root = logging.getLogger()
            handlers, level = list(root.handlers), root.level
            import onvif.client  # type: ignore[import-untyped]
            import onvif.util  # type: ignore[import-untyped]

            for handler in root.handlers[:]:  # onvif.client calls logging.basicConfig() at import
                if handler not in handlers:
                    root.removeHandler(handler)
            root.setLevel(level)
            _lib = onvif
    return _lib


async def load_library() -> Any:
    """The ``onvif`` package, imported off the event loop the first time."""
    return _lib if _lib is not None else await asyncio.to_thread(_import_library)


def _fault_text(exc: Any) -> str:
    subcodes = [getattr(s, "localname", None) or str(s) for s in (getattr(exc, "subcodes", None) or [])]
    text = str(getattr(exc, "message", None) or exc or "")
    return f"{text} ({', '.join(subcodes)})" if subcodes else text


def map_error(exc: BaseException, where: str) -> AdapterError:
    """The hub's error for anything the ONVIF library, zeep or aiohttp raised."""
    from zeep import exceptions as zeep_exc

    if isinstance(exc, AdapterError):
        return exc
    if isinstance(exc, zeep_exc.Fault):
        subcodes = {getattr(s, "localname", str(s)) for s in (exc.subcodes or [])}
        text = _fault_text(exc)
        if subcodes & _AUTH_SUBCODES or _AUTH_TEXT.search(text):
            return AdapterAuthError(f"{where}: credentials refused ({redact_text(text)})")
        return AdapterNotReady(f"{where}: device fault: {redact_text(text)}")
    if isinstance(exc, zeep_exc.TransportError):
        return _status_error(exc.status_code, where)
    if isinstance(exc, aiohttp.ClientResponseError):
        return _status_error(exc.status, where)
    if isinstance(exc, TimeoutError):
        return AdapterConnectError(f"{where}: timed out")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return AdapterConnectError(f"{where}: {redact_text(str(exc)) or type(exc).__name__}")
    if _lib is not None and isinstance(exc, _lib.exceptions.ONVIFError):
        if exc.__cause__ is not None:
            return map_error(exc.__cause__, where)
        if isinstance(exc, _lib.exceptions.ONVIFAuthError):
            return AdapterAuthError(f"{where}: credentials refused")
        if isinstance(exc, _lib.exceptions.ONVIFTimeoutError):
            return AdapterConnectError(f"{where}: timed out")
        return AdapterNotReady(f"{where}: {redact_text(str(exc))}")
    if isinstance(exc, zeep_exc.Error):
        detail = redact_text(str(exc))[:200]
        return AdapterNotReady(f"{where}: invalid reply ({type(exc).__name__}: {detail})")
    log.debug("%s: unexpected %s from the ONVIF library", where, type(exc).__name__, exc_info=exc)
    return AdapterNotReady(f"{where}: {type(exc).__name__}: {redact_text(str(exc))[:200]}")


def _status_error(status: int | None, where: str) -> AdapterError:
    if status in (401, 403):
        return AdapterAuthError(f"{where}: credentials refused (HTTP {status})")
    return AdapterNotReady(f"{where}: device answered HTTP {status}")


@dataclass(frozen=True, slots=True)
class Profile:
    """A media profile: one encoder configuration the device can stream."""

    token: str
    name: str
    width: int
    height: int
    encoding: str
    ptz: bool

    @property
    def area(self) -> int:
        return self.width * self.height

    def to_json(self) -> dict[str, Any]:  # not "token": redaction would hide it as a secret
        return {"profile": self.token, "name": self.name, "width": self.width, "height": self.height,
                "encoding": self.encoding, "ptz": self.ptz}


def parse_profile(raw: Any) -> Profile | None:
    """A zeep ``tt:Profile`` as a :class:`Profile`; ``None`` for profiles without video."""
    enc = getattr(raw, "VideoEncoderConfiguration", None)
    res = getattr(enc, "Resolution", None)
    token = getattr(raw, "token", None)
    if enc is None or res is None or not token:
        return None
    return Profile(token=str(token), name=str(getattr(raw, "Name", "") or token),
                   width=int(getattr(res, "Width", 0) or 0), height=int(getattr(res, "Height", 0) or 0),
                   encoding=str(getattr(enc, "Encoding", "") or ""),
                   ptz=getattr(raw, "PTZConfiguration", None) is not None)


def lifetime_s(reply: Any) -> float | None:
    """TerminationTime - CurrentTime of a subscription reply (both on the device's clock)."""
    current, termination = getattr(reply, "CurrentTime", None), getattr(reply, "TerminationTime", None)
    if (isinstance(current, dt.datetime) and isinstance(termination, dt.datetime)
            and (current.tzinfo is None) == (termination.tzinfo is None)):
        return (termination - current).total_seconds()
    return None


class OnvifSession:
    """A connected device. ``await open()`` first; ``await close()`` always (safe twice)."""

    def __init__(self, host: str, port: int, username: str | None, password: str | None, *,
                 timeout_s: float = 10.0, adjust_time: bool = True, label: str = "onvif") -> None:
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.adjust_time = adjust_time
        self.label = label
        self.clock_offset_s: float | None = None  # device clock - our clock
        self._username = username
        self._password = password
        self._camera: Any = None
        self._opened_at = 0.0
        self._absolute_times = False  # the device mishandles relative subscription times

    def __repr__(self) -> str:
        return f"<OnvifSession {self.label} {self.host}:{self.port}>"

    async def guard(self, aw: Awaitable[T], what: str, timeout_s: float | None = None) -> T:
        """Await ``aw`` under a timeout; library errors become :class:`AdapterError` s."""
        try:
            async with asyncio.timeout(timeout_s or self.timeout_s):
                return await aw
        except Exception as exc:
            raise map_error(exc, f"{self.label}: {what}") from None

    async def open(self) -> None:
        lib = await load_library()
        proxies = {k: v for k, v in os.environ.items() if k in ("http_proxy", "https_proxy")}
        try:
            self._camera = lib.client.ONVIFCamera(self.host, self.port, self._username, self._password,
                                                  adjust_time=self.adjust_time, no_cache=True)
        finally:
            os.environ.update(proxies)  # ONVIFCamera() deletes them from the whole process's environment
        await self.guard(self._camera.update_xaddrs(), "connect", 2 * self.timeout_s)
        diff = self._camera.dt_diff
        self.clock_offset_s = round(diff.total_seconds(), 1) if isinstance(diff, dt.timedelta) else None
        self._opened_at = time.monotonic()

    async def _resync_clock(self) -> bool:
        """Reconnect, reading the device clock again; ``True`` if the offset moved (a camera that
        rebooted without NTP, or whose clock was set, refuses timestamps signed with the old one)."""
        if not self.adjust_time or time.monotonic() - self._opened_at < _RESYNC_MIN_S:
            return False
        old = self.clock_offset_s
        await self.close()
        await self.open()
        moved = old is None or self.clock_offset_s is None or abs(self.clock_offset_s - old) > 2.0
        if moved:
            log.info("%s: the device clock moved (offset now %s s); signing with the new offset",
                     self.label, None if self.clock_offset_s is None else round(self.clock_offset_s, 1))
        return moved

    async def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                await camera.close()
            except Exception as exc:  # closing must never fail
                log.debug("%s: error while closing: %s", self.label, exc)

    @property
    def services(self) -> list[str]:
        xaddrs = self._camera.xaddrs if self._camera is not None else {}
        return sorted(name for name, ns in SERVICE_NS.items() if xaddrs.get(ns))

    def has(self, service: str) -> bool:
        return service in self.services

    async def call(self, service: str, operation: str, params: Any = None, *, port_type: str | None = None,
                   timeout_s: float | None = None) -> Any:
        try:
            return await self._call(service, operation, params, port_type, timeout_s)
        except AdapterAuthError:
            # A subscription lives on the old connection: the events loop re-subscribes instead.
            if port_type is not None or not await self._resync_clock():
                raise
        return await self._call(service, operation, params, port_type, timeout_s)

    async def _call(self, service: str, operation: str, params: Any, port_type: str | None,
                    timeout_s: float | None) -> Any:
        if self._camera is None:
            raise AdapterConnectError(f"{self.label}: not connected")
        create = self._camera.create_onvif_service(service, port_type=port_type)
        svc = await self.guard(create, f"{service} service")
        return await self.guard(getattr(svc, operation)(params), operation, timeout_s)

    # -- device and media --------------------------------------------------------------------
    async def device_info(self) -> dict[str, str]:
        info = await self.call("devicemgmt", "GetDeviceInformation")
        return {key: str(getattr(info, key, "") or "") for key in
                ("Manufacturer", "Model", "FirmwareVersion", "SerialNumber", "HardwareId")}

    async def profiles(self) -> list[Profile]:
        if not self.has("media"):
            raise AdapterNotReady(f"{self.label}: the device offers no media service (yet)")
        raw = await self.call("media", "GetProfiles") or []
        found = [p for p in map(parse_profile, raw) if p is not None]
        if not found:
            raise AdapterNotReady(f"{self.label}: the device has no video profiles")
        return found

    async def stream_uri(self, token: str) -> str:
        setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
        reply = await self.call("media", "GetStreamUri", {"StreamSetup": setup, "ProfileToken": token})
        uri = getattr(reply, "Uri", None)
        if not uri:
            raise AdapterNotReady(f"{self.label}: no stream URI for profile {token!r}")
        return str(uri).strip()

    async def snapshot_uri(self, token: str) -> str | None:
        """The JPEG snapshot URL, or ``None`` when the device has none (or refuses to say)."""
        try:
            reply = await self.call("media", "GetSnapshotUri", {"ProfileToken": token})
        except AdapterNotReady as exc:
            log.debug("%s: no snapshot URI: %s", self.label, exc)
            return None
        uri = getattr(reply, "Uri", None)
        return str(uri).strip() if uri else None

    # -- PTZ ---------------------------------------------------------------------------------
    async def presets(self, profile: str) -> list[tuple[str, str]]:
        """(token, name) of every preset."""
        reply = await self.call("ptz", "GetPresets", {"ProfileToken": profile}) or []
        return [(str(p.token), str(getattr(p, "Name", "") or "")) for p in reply if getattr(p, "token", None)]

    async def goto_preset(self, profile: str, token: str) -> None:
        await self.call("ptz", "GotoPreset", {"ProfileToken": profile, "PresetToken": token})

    # -- PullPoint events ----------------------------------------------------------------------
    def _termination(self, seconds: float) -> str:
        if not self._absolute_times:
            return f"PT{max(1, round(seconds))}S"
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds + (self.clock_offset_s or 0.0))
        return at.isoformat(timespec="seconds").replace("+00:00", "Z")

    async def create_pullpoint(self, seconds: float) -> float:
        """CreatePullPointSubscription; returns the granted lifetime in seconds."""
        if not self.has("events"):
            raise AdapterNotReady(f"{self.label}: the device offers no event service")
        reply = await self.call("events", "CreatePullPointSubscription",
                                {"InitialTerminationTime": self._termination(seconds)})
        address = self._subscription_address(reply)
        self._camera.xaddrs[PULLPOINT_NS] = address
        granted = lifetime_s(reply)
        if granted is not None and granted < seconds / 2:
            log.debug("%s: granted %.0f s of %.0f s: switching to absolute termination times",
                      self.label, granted, seconds)
            self._absolute_times = True
            return await self.renew(seconds)
        return granted if granted is not None else seconds

    def _subscription_address(self, reply: Any) -> str:
        """The PullPoint's URL from a CreatePullPointSubscription reply (which odd devices leave out)."""
        reference = getattr(reply, "SubscriptionReference", None)
        raw = getattr(getattr(reference, "Address", None), "_value_1", None)
        try:
            address = self._lib_util().normalize_url(raw) if isinstance(raw, str) and raw.strip() else None
        except Exception as exc:  # the library's URL rewriting on a value it did not expect
            raise map_error(exc, f"{self.label}: subscription address") from None
        if not address:
            raise AdapterNotReady(f"{self.label}: the device returned no subscription address")
        return str(address)

    async def renew(self, seconds: float) -> float:
        reply = await self.call("subscription", "Renew", {"TerminationTime": self._termination(seconds)},
                                port_type="PullPointSubscription")
        granted = lifetime_s(reply)
        return granted if granted is not None and granted > 0 else seconds

    async def pull(self, wait_s: float, limit: int) -> list[Any]:
        """PullMessages: wait up to ``wait_s`` on the device for notifications."""
        params = {"Timeout": dt.timedelta(seconds=max(0.0, round(wait_s, 1))), "MessageLimit": limit}
        reply = await self.call("pullpoint", "PullMessages", params, port_type="PullPointSubscription",
                                timeout_s=wait_s + self.timeout_s)
        return list(getattr(reply, "NotificationMessage", None) or [])

    async def unsubscribe(self, timeout_s: float = 1.0) -> None:
        """Best effort: the subscription also ends by itself at its termination time."""
        if self._camera is None or PULLPOINT_NS not in self._camera.xaddrs:
            return
        try:
            await self.call("subscription", "Unsubscribe", port_type="PullPointSubscription",
                            timeout_s=timeout_s)
        except AdapterError as exc:
            log.debug("%s: unsubscribe failed: %s", self.label, exc)

    @staticmethod
    def _lib_util() -> Any:
        return _lib.util
