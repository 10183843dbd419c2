"""An emulated ONVIF camera for tests: real SOAP 1.2 over HTTP (aiohttp), a far-edge fake.

Services: Device (GetSystemDateAndTime, GetDeviceInformation, GetCapabilities, GetServices), Media
(GetProfiles: ``main`` 1280x720 and ``sub`` 640x360, GetStreamUri, GetSnapshotUri), Events
(GetEventProperties, CreatePullPointSubscription, PullMessages with a long-poll timeout, Renew,
Unsubscribe) and PTZ (GetPresets, GotoPreset; calls are recorded in :attr:`OnvifDevice.goto_calls`).

Every request but GetSystemDateAndTime must carry a WS-Security UsernameToken with a
PasswordDigest ``Base64(SHA1(nonce + created + password))`` whose ``Created`` is within
``max_created_skew_s`` of the *device's* clock (``clock_skew_s`` off the real one); a wrong
password, a stale/future timestamp or a replayed nonce gets a ``ter:NotAuthorized`` fault.

Tests drive it with :meth:`OnvifDevice.emit` (push a notification to every subscription),
:meth:`OnvifDevice.reboot` (drop all subscriptions, optionally stop answering for a moment) and
:attr:`OnvifDevice.ready` (``False``: answer HTTP 503 like a camera still booting). Firmware quirks:
:attr:`OnvifDevice.pull_waits` (``False``: PullMessages ignores its Timeout and answers at once, empty
when nothing is queued) and :attr:`OnvifDevice.replies` (operation name → a response body sent instead
of the right one, e.g. a CreatePullPointSubscriptionResponse without an address). The XML comes from
:mod:`tests.support.onvif_templates`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import itertools
import re
from collections import Counter, deque
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web
from lxml import etree  # type: ignore[import-untyped]

from tests.support import onvif_templates as xml
from tests.support.onvif_templates import NS, Profile

__all__ = ["OnvifDevice", "Profile", "SoapFault", "Subscription", "parse_time"]

PRE_AUTH = frozenset({"GetSystemDateAndTime"})
_DURATION = re.compile(r"^P(?:(?P<d>[\d.]+)D)?"
                       r"(?:T(?:(?P<h>[\d.]+)H)?(?:(?P<m>[\d.]+)M)?(?:(?P<s>[\d.]+)S)?)?$")


class SoapFault(Exception):
    def __init__(self, subcode: str, reason: str, status: int = 400, code: str = "env:Sender") -> None:
        super().__init__(reason)
        self.subcode, self.reason, self.status, self.code = subcode, reason, status, code


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """An xsd:duration (``PT60S``, relative to ``now``) or an absolute xsd:dateTime."""
    text = text.strip()
    m = _DURATION.match(text)
    if m:
        secs = sum(float(m.group(k) or 0) * f for k, f in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)))
        return now + dt.timedelta(seconds=secs)
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@dataclass
class Subscription:
    id: str
    termination: dt.datetime
    queue: deque[str] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    alive: bool = True


class OnvifDevice:
    """The emulated camera. ``async with OnvifDevice(...) as dev`` serves on ``dev.port``."""

    def __init__(
        self,
        *,
        main_url: str = "rtsp://127.0.0.1:8554/main",
        sub_url: str = "rtsp://127.0.0.1:8554/sub",
        username: str = "admin",
        password: str = "admin-pass",
        clock_skew_s: float = 0.0,
        max_created_skew_s: float = 10.0,
        auth_fault_status: int = 400,
        ptz: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        snapshot_jpeg: bytes | None = None,
    ) -> None:
        self.username, self.password = username, password
        self.clock_skew_s = clock_skew_s
        self.max_created_skew_s = max_created_skew_s
        self.auth_fault_status = auth_fault_status
        self.has_ptz = ptz
        self.host, self.port = host, port
        self.snapshot_jpeg = snapshot_jpeg or _tiny_jpeg()
        self.profiles = [Profile("main", 1280, 720, main_url, ptz=ptz), Profile("sub", 640, 360, sub_url)]
        self.presets = {"1": "Gate", "2": "Parking lot"}
        self.info = {"Manufacturer": "Sanwang Test", "Model": "EMU-ONVIF-1", "FirmwareVersion": "1.2.3",
                     "SerialNumber": "SN0001", "HardwareId": "HW1"}
        self.ready = True
        self.pull_waits = True  # False: PullMessages answers at once, ignoring its Timeout
        self.replies: dict[str, str] = {}  # operation → response body to send instead of the right one
        self.calls: Counter[str] = Counter()
        self.auth_failures: list[str] = []  # why each refused request was refused
        self.goto_calls: list[tuple[str, str]] = []  # (profile token, preset token)
        self.subscriptions: dict[str, Subscription] = {}
        self.properties: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, str]] = {}
        self.reboots = 0
        self._ids = itertools.count(1)
        self._nonces: deque[str] = deque(maxlen=1000)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> OnvifDevice:
        app = web.Application()
        app.router.add_post("/onvif/{service}", self._handle)
        app.router.add_post("/onvif/subscription/{sid}", self._handle)
        app.router.add_get("/onvif/snapshot.jpg", self._snapshot)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await self._listen()
        return self

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        if self.port == 0:
            server = self._site._server
            assert isinstance(server, asyncio.base_events.Server)
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._drop_subscriptions()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    async def __aenter__(self) -> OnvifDevice:
        return await self.start()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def reboot(self, down_s: float = 0.0) -> None:
        """Drop every subscription. ``down_s == 0``: pending and later pulls get an unknown-subscription
        fault. ``down_s > 0``: open connections are reset and new ones refused for that long, as while
        a camera boots."""
        self.reboots += 1
        self._drop_subscriptions()
        if down_s > 0 and self._site is not None and self._runner is not None:
            await self._site.stop()
            for conn in self._runner.server.connections if self._runner.server else ():
                conn.force_close()
            await asyncio.sleep(down_s)
            await self._listen()

    def _drop_subscriptions(self) -> None:
        for sub in self.subscriptions.values():
            sub.alive = False
            sub.wakeup.set()
        self.subscriptions.clear()

    # -- test API ----------------------------------------------------------------------------
    def now(self) -> dt.datetime:
        """The device's clock (real UTC + ``clock_skew_s``)."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.clock_skew_s)

    def emit(self, topic: str, source: dict[str, str] | None = None, data: dict[str, str] | None = None,
             *, operation: str = "Changed") -> int:
        """Queue a notification on every live subscription; returns how many got it.

        A message whose data holds a boolean (``State``, ``IsMotion``...) is a *property*: its last
        value is sent as ``Initialized`` to every new subscription, as real cameras do.
        """
        source = source if source is not None else {"VideoSourceConfigurationToken": "vsc0"}
        data = data if data is not None else {"State": "true"}
        if any(v in ("true", "false") for v in data.values()):
            self.properties[(topic, tuple(sorted(source.items())))] = dict(data)
        xml = self._notification(topic, source, data, operation)
        for sub in self.subscriptions.values():
            sub.queue.append(xml)
            sub.wakeup.set()
        return len(self.subscriptions)

    def _notification(self, topic: str, source: dict[str, str], data: dict[str, str], operation: str) -> str:
        return xml.notification(topic, source, data, operation, self.now())

    # -- HTTP/SOAP plumbing ------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503, text="booting")
        try:
            root = etree.fromstring(await request.read())
            body = root.find("env:Body", NS)
            if body is None or len(body) == 0:
                raise SoapFault("ter:InvalidArgVal", "no SOAP 1.2 body")
            op_el = body[0]
            op = etree.QName(op_el).localname
            self.calls[op] += 1
            if op not in PRE_AUTH:
                self._authenticate(root.find("env:Header", NS))
            handler = getattr(self, f"_op_{op}", None)
            if handler is None:
                raise SoapFault("ter:ActionNotSupported", f"{op} is not supported", code="env:Receiver")
            body = self.replies.get(op) or await handler(op_el, request.match_info.get("sid"))
        except SoapFault as fault:
            return self._fault(fault)
        except (etree.XMLSyntaxError, ValueError) as exc:
            return self._fault(SoapFault("ter:InvalidArgVal", f"bad request: {exc}"))
        return web.Response(text=xml.envelope(body), content_type="application/soap+xml", charset="utf-8")

    @staticmethod
    def _fault(f: SoapFault) -> web.Response:
        return web.Response(status=f.status, text=xml.envelope(xml.fault(f.code, f.subcode, f.reason)),
                            content_type="application/soap+xml", charset="utf-8")

    def _authenticate(self, header: etree._Element | None) -> None:
        token = header.find("wsse:Security/wsse:UsernameToken", NS) if header is not None else None
        reason = self._check_token(token)
        if reason is not None:
            self.auth_failures.append(reason)
            raise SoapFault("ter:NotAuthorized", "Sender not Authorized", status=self.auth_fault_status)

    def _check_token(self, token: etree._Element | None) -> str | None:
        if token is None:
            return "no UsernameToken"
        user = token.findtext("wsse:Username", namespaces=NS)
        pw = token.find("wsse:Password", NS)
        nonce = token.findtext("wsse:Nonce", namespaces=NS)
        created = token.findtext("wsu:Created", namespaces=NS)
        if pw is None or not (pw.get("Type") or "").endswith("#PasswordDigest") or not nonce or not created:
            return "not a PasswordDigest token"
        expected = base64.b64encode(hashlib.sha1(  # WS-Security's digest is SHA-1 by definition
            base64.b64decode(nonce) + created.encode() + self.password.encode()).digest()).decode()
        if user != self.username or not hmac.compare_digest(expected, (pw.text or "").strip()):
            return "wrong username or password"
        skew = abs((parse_time(created, self.now()) - self.now()).total_seconds())
        if skew > self.max_created_skew_s:
            return f"Created is {skew:.0f} s off the device clock"
        if nonce in self._nonces:
            return "replayed nonce"
        self._nonces.append(nonce)
        return None

    async def _snapshot(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="camera"'})
        return web.Response(body=self.snapshot_jpeg, content_type="image/jpeg")

    def _base(self) -> str:
        return f"http://{self.host}:{self.port}/onvif"

    # -- Device ------------------------------------------------------------------------------
    async def _op_GetSystemDateAndTime(self, el: etree._Element, sid: str | None) -> str:
        return xml.system_date_and_time(self.now())

    async def _op_GetDeviceInformation(self, el: etree._Element, sid: str | None) -> str:
        return xml.device_information(self.info)

    async def _op_GetServices(self, el: etree._Element, sid: str | None) -> str:
        return xml.services(self._base(), ["device", "media", "events"] + (["ptz"] if self.has_ptz else []))

    async def _op_GetCapabilities(self, el: etree._Element, sid: str | None) -> str:
        return xml.capabilities(self._base(), self.has_ptz)

    # -- Media -------------------------------------------------------------------------------
    async def _op_GetProfiles(self, el: etree._Element, sid: str | None) -> str:
        return xml.profiles(self.profiles)

    def _profile(self, el: etree._Element) -> Profile:
        token = (el.findtext("trt:ProfileToken", namespaces=NS)
                 or el.findtext("tptz:ProfileToken", namespaces=NS) or "").strip()
        for p in self.profiles:
            if p.token == token:
                return p
        raise SoapFault("ter:InvalidArgVal", f"no profile {token!r}")

    async def _op_GetStreamUri(self, el: etree._Element, sid: str | None) -> str:
        return xml.media_uri("GetStreamUri", self._profile(el).stream_url)

    async def _op_GetSnapshotUri(self, el: etree._Element, sid: str | None) -> str:
        self._profile(el)
        return xml.media_uri("GetSnapshotUri", f"{self._base()}/snapshot.jpg")

    # -- Events ------------------------------------------------------------------------------
    async def _op_GetEventProperties(self, el: etree._Element, sid: str | None) -> str:
        return xml.event_properties()

    async def _op_CreatePullPointSubscription(self, el: etree._Element, sid: str | None) -> str:
        wanted = el.findtext("tev:InitialTerminationTime", namespaces=NS) or "PT60S"
        sub = Subscription(str(next(self._ids)), parse_time(wanted, self.now()))
        for (topic, source), data in self.properties.items():
            sub.queue.append(self._notification(topic, dict(source), data, "Initialized"))
        self.subscriptions[sub.id] = sub
        return xml.pullpoint_created(f"{self._base()}/subscription/{sub.id}", self.now(), sub.termination)

    def _subscription(self, sid: str | None) -> Subscription:
        sub = self.subscriptions.get(sid or "")
        if sub is not None and sub.termination < self.now():
            del self.subscriptions[sub.id]  # expired: never renewed in time
            sub = None
        if sub is None or not sub.alive:
            raise SoapFault("wsrf-rw:ResourceUnknownFault", f"unknown subscription {sid!r}")
        return sub

    async def _op_PullMessages(self, el: etree._Element, sid: str | None) -> str:
        sub = self._subscription(sid)
        timeout_text = el.findtext("tev:Timeout", namespaces=NS) or "PT1S"
        timeout = (parse_time(timeout_text, self.now()) - self.now()).total_seconds()
        limit = int(el.findtext("tev:MessageLimit", namespaces=NS) or "100")
        if not sub.queue and self.pull_waits:
            sub.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wakeup.wait(), max(0.0, min(timeout, 60.0)))
        if not sub.alive:
            raise SoapFault("wsrf-rw:ResourceUnknownFault", "subscription dropped (device rebooted)")
        messages = [sub.queue.popleft() for _ in range(min(limit, len(sub.queue)))]
        return xml.pull_messages(self.now(), sub.termination, messages)

    async def _op_Renew(self, el: etree._Element, sid: str | None) -> str:
        sub = self._subscription(sid)
        wanted = el.findtext("wsnt:TerminationTime", namespaces=NS) or "PT60S"
        sub.termination = parse_time(wanted, self.now())
        return xml.renewed(self.now(), sub.termination)

    async def _op_Unsubscribe(self, el: etree._Element, sid: str | None) -> str:
        sub = self._subscription(sid)
        sub.alive = False
        sub.wakeup.set()
        del self.subscriptions[sub.id]
        return "<wsnt:UnsubscribeResponse/>"

    # -- PTZ ---------------------------------------------------------------------------------
    async def _op_GetPresets(self, el: etree._Element, sid: str | None) -> str:
        self._profile(el)
        return xml.presets(self.presets)

    async def _op_GotoPreset(self, el: etree._Element, sid: str | None) -> str:
        profile = self._profile(el)
        token = (el.findtext("tptz:PresetToken", namespaces=NS) or "").strip()
        if token not in self.presets:
            raise SoapFault("ter:InvalidArgVal", f"no preset {token!r}")
        self.goto_calls.append((profile.token, token))
        return "<tptz:GotoPresetResponse/>"


def _tiny_jpeg() -> bytes:
    import cv2
    import numpy as np

    image = np.zeros((90, 160, 3), np.uint8)
    image[:, :80] = (40, 160, 40)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return bytes(buf)
