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
:attr:`OnvifDevice.ready` (``False``: answer HTTP 503 like a camera still booting).
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
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web
from lxml import etree  # type: ignore[import-untyped]

ENV = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
TT = "http://www.onvif.org/ver10/schema"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
TEV = "http://www.onvif.org/ver10/events/wsdl"
NS = {"env": ENV, "wsse": WSSE, "wsu": WSU, "tt": TT, "wsnt": WSNT, "tev": TEV,
      "tptz": "http://www.onvif.org/ver20/ptz/wsdl", "trt": "http://www.onvif.org/ver10/media/wsdl"}
SERVICE_NS = {
    "device": "http://www.onvif.org/ver10/device/wsdl",
    "media": "http://www.onvif.org/ver10/media/wsdl",
    "events": "http://www.onvif.org/ver10/events/wsdl",
    "ptz": "http://www.onvif.org/ver20/ptz/wsdl",
}
_DECL = " ".join(f'xmlns:{p}="{u}"' for p, u in {
    "env": ENV, "tt": TT, "tds": SERVICE_NS["device"], "trt": SERVICE_NS["media"], "tev": TEV,
    "tptz": SERVICE_NS["ptz"], "wsnt": WSNT, "wsa": "http://www.w3.org/2005/08/addressing",
    "wstop": "http://docs.oasis-open.org/wsn/t-1", "ter": "http://www.onvif.org/ver10/error",
    "wsrf-rw": "http://docs.oasis-open.org/wsrf/rw-2",
    "tns1": "http://www.onvif.org/ver10/topics", "tnsvendor": "http://example.com/vendor/topics",
}.items())
PRE_AUTH = frozenset({"GetSystemDateAndTime"})
_DURATION = re.compile(r"^P(?:(?P<d>[\d.]+)D)?"
                       r"(?:T(?:(?P<h>[\d.]+)H)?(?:(?P<m>[\d.]+)M)?(?:(?P<s>[\d.]+)S)?)?$")
DIALECT = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"


class SoapFault(Exception):
    def __init__(self, subcode: str, reason: str, status: int = 400, code: str = "env:Sender") -> None:
        super().__init__(reason)
        self.subcode, self.reason, self.status, self.code = subcode, reason, status, code


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """An xsd:duration (``PT60S``, relative to ``now``) or an absolute xsd:dateTime."""
    text = text.strip()
    m = _DURATION.match(text)
    if m:
        secs = sum(float(m.group(k) or 0) * f for k, f in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)))
        return now + dt.timedelta(seconds=secs)
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _items(values: dict[str, str]) -> str:
    return "".join(f"<tt:SimpleItem Name={quoteattr(k)} Value={quoteattr(v)}/>" for k, v in values.items())


@dataclass
class Subscription:
    id: str
    termination: dt.datetime
    queue: deque[str] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    alive: bool = True


@dataclass(frozen=True)
class Profile:
    token: str
    width: int
    height: int
    stream_url: str
    ptz: bool = False


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
        return (f'<wsnt:NotificationMessage><wsnt:Topic Dialect="{DIALECT}">{escape(topic)}</wsnt:Topic>'
                f'<wsnt:Message><tt:Message UtcTime="{_iso(self.now())}" PropertyOperation="{operation}">'
                f"<tt:Source>{_items(source)}</tt:Source><tt:Data>{_items(data)}</tt:Data>"
                "</tt:Message></wsnt:Message></wsnt:NotificationMessage>")

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
            xml = await handler(op_el, request.match_info.get("sid"))
        except SoapFault as fault:
            return self._fault(fault)
        except (etree.XMLSyntaxError, ValueError) as exc:
            return self._fault(SoapFault("ter:InvalidArgVal", f"bad request: {exc}"))
        return web.Response(text=self._envelope(xml), content_type="application/soap+xml", charset="utf-8")

    @staticmethod
    def _envelope(body: str) -> str:
        return (f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope {_DECL}>'
                f"<env:Body>{body}</env:Body></env:Envelope>")

    def _fault(self, f: SoapFault) -> web.Response:
        body = (f"<env:Fault><env:Code><env:Value>{f.code}</env:Value><env:Subcode><env:Value>{f.subcode}"
                f'</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">{escape(f.reason)}'
                "</env:Text></env:Reason></env:Fault>")
        return web.Response(status=f.status, text=self._envelope(body), content_type="application/soap+xml",
                            charset="utf-8")

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
        n = self.now()
        return ("<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
                "<tt:DateTimeType>NTP</tt:DateTimeType>"
                "<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
                f"<tt:UTCDateTime><tt:Time><tt:Hour>{n.hour}</tt:Hour><tt:Minute>{n.minute}</tt:Minute>"
                f"<tt:Second>{n.second}</tt:Second></tt:Time><tt:Date><tt:Year>{n.year}</tt:Year>"
                f"<tt:Month>{n.month}</tt:Month><tt:Day>{n.day}</tt:Day></tt:Date></tt:UTCDateTime>"
                "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>")

    async def _op_GetDeviceInformation(self, el: etree._Element, sid: str | None) -> str:
        fields = "".join(f"<tds:{k}>{escape(v)}</tds:{k}>" for k, v in self.info.items())
        return f"<tds:GetDeviceInformationResponse>{fields}</tds:GetDeviceInformationResponse>"

    def _services(self) -> dict[str, str]:
        names = ["device", "media", "events"] + (["ptz"] if self.has_ptz else [])
        return {name: SERVICE_NS[name] for name in names}

    async def _op_GetServices(self, el: etree._Element, sid: str | None) -> str:
        out = "".join(f"<tds:Service><tds:Namespace>{ns}</tds:Namespace>"
                      f"<tds:XAddr>{self._base()}/{name}_service</tds:XAddr>"
                      "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version>"
                      "</tds:Service>" for name, ns in self._services().items())
        return f"<tds:GetServicesResponse>{out}</tds:GetServicesResponse>"

    async def _op_GetCapabilities(self, el: etree._Element, sid: str | None) -> str:
        b = self._base()
        ptz = f"<tt:PTZ><tt:XAddr>{b}/ptz_service</tt:XAddr></tt:PTZ>" if self.has_ptz else ""
        return ("<tds:GetCapabilitiesResponse><tds:Capabilities>"
                f"<tt:Device><tt:XAddr>{b}/device_service</tt:XAddr></tt:Device>"
                f"<tt:Events><tt:XAddr>{b}/events_service</tt:XAddr><tt:WSSubscriptionPolicySupport>false"
                "</tt:WSSubscriptionPolicySupport><tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
                "<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
                "</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>"
                f"<tt:Media><tt:XAddr>{b}/media_service</tt:XAddr><tt:StreamingCapabilities>"
                "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
                "<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
                f"{ptz}</tds:Capabilities></tds:GetCapabilitiesResponse>")

    # -- Media -------------------------------------------------------------------------------
    async def _op_GetProfiles(self, el: etree._Element, sid: str | None) -> str:
        out = []
        for p in self.profiles:
            ptz = ('<tt:PTZConfiguration token="ptz0"><tt:Name>PTZ</tt:Name><tt:UseCount>1</tt:UseCount>'
                   "<tt:NodeToken>node0</tt:NodeToken></tt:PTZConfiguration>") if p.ptz else ""
            out.append(
                f'<trt:Profiles token="{p.token}" fixed="true"><tt:Name>{p.token}</tt:Name>'
                '<tt:VideoSourceConfiguration token="vsc0"><tt:Name>vsc</tt:Name><tt:UseCount>2</tt:UseCount>'
                '<tt:SourceToken>vs0</tt:SourceToken><tt:Bounds x="0" y="0" width="1280" height="720"/>'
                f'</tt:VideoSourceConfiguration><tt:VideoEncoderConfiguration token="enc_{p.token}">'
                f"<tt:Name>enc_{p.token}</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
                f"<tt:Resolution><tt:Width>{p.width}</tt:Width><tt:Height>{p.height}</tt:Height></tt:Resolution>"
                "<tt:Quality>5</tt:Quality><tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type>"
                "<tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port><tt:TTL>0</tt:TTL>"
                "<tt:AutoStart>false</tt:AutoStart></tt:Multicast><tt:SessionTimeout>PT60S</tt:SessionTimeout>"
                f"</tt:VideoEncoderConfiguration>{ptz}</trt:Profiles>")
        return f"<trt:GetProfilesResponse>{''.join(out)}</trt:GetProfilesResponse>"

    def _profile(self, el: etree._Element) -> Profile:
        token = (el.findtext("trt:ProfileToken", namespaces=NS)
                 or el.findtext("tptz:ProfileToken", namespaces=NS) or "").strip()
        for p in self.profiles:
            if p.token == token:
                return p
        raise SoapFault("ter:InvalidArgVal", f"no profile {token!r}")

    @staticmethod
    def _media_uri(op: str, uri: str) -> str:
        return (f"<trt:{op}Response><trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri>"
                "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
                f"</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:{op}Response>")

    async def _op_GetStreamUri(self, el: etree._Element, sid: str | None) -> str:
        return self._media_uri("GetStreamUri", self._profile(el).stream_url)

    async def _op_GetSnapshotUri(self, el: etree._Element, sid: str | None) -> str:
        self._profile(el)
        return self._media_uri("GetSnapshotUri", f"{self._base()}/snapshot.jpg")

    # -- Events ------------------------------------------------------------------------------
    async def _op_GetEventProperties(self, el: etree._Element, sid: str | None) -> str:
        return ("<tev:GetEventPropertiesResponse><tev:TopicNamespaceLocation>"
                "http://www.onvif.org/onvif/ver10/topics/topicns.xml</tev:TopicNamespaceLocation>"
                "<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet><wstop:TopicSet><tns1:VideoSource "
                'wstop:topic="true"/><tns1:RuleEngine wstop:topic="true"/></wstop:TopicSet>'
                f"<wsnt:TopicExpressionDialect>{DIALECT}</wsnt:TopicExpressionDialect>"
                "<tev:MessageContentFilterDialect>http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"
                "</tev:MessageContentFilterDialect><tev:MessageContentSchemaLocation>"
                "http://www.onvif.org/onvif/ver10/schema/onvif.xsd</tev:MessageContentSchemaLocation>"
                "</tev:GetEventPropertiesResponse>")

    async def _op_CreatePullPointSubscription(self, el: etree._Element, sid: str | None) -> str:
        wanted = el.findtext("tev:InitialTerminationTime", namespaces=NS) or "PT60S"
        sub = Subscription(str(next(self._ids)), parse_time(wanted, self.now()))
        for (topic, source), data in self.properties.items():
            sub.queue.append(self._notification(topic, dict(source), data, "Initialized"))
        self.subscriptions[sub.id] = sub
        return (f"<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference><wsa:Address>"
                f"{self._base()}/subscription/{sub.id}</wsa:Address></tev:SubscriptionReference>"
                f"<wsnt:CurrentTime>{_iso(self.now())}</wsnt:CurrentTime><wsnt:TerminationTime>{_iso(sub.termination)}"
                "</wsnt:TerminationTime></tev:CreatePullPointSubscriptionResponse>")

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
        if not sub.queue:
            sub.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wakeup.wait(), max(0.0, min(timeout, 60.0)))
        if not sub.alive:
            raise SoapFault("wsrf-rw:ResourceUnknownFault", "subscription dropped (device rebooted)")
        messages = [sub.queue.popleft() for _ in range(min(limit, len(sub.queue)))]
        return (f"<tev:PullMessagesResponse><tev:CurrentTime>{_iso(self.now())}</tev:CurrentTime>"
                f"<tev:TerminationTime>{_iso(sub.termination)}</tev:TerminationTime>{''.join(messages)}"
                "</tev:PullMessagesResponse>")

    async def _op_Renew(self, el: etree._Element, sid: str | None) -> str:
        sub = self._subscription(sid)
        wanted = el.findtext("wsnt:TerminationTime", namespaces=NS) or "PT60S"
        sub.termination = parse_time(wanted, self.now())
        return (f"<wsnt:RenewResponse><wsnt:TerminationTime>{_iso(sub.termination)}</wsnt:TerminationTime>"
                f"<wsnt:CurrentTime>{_iso(self.now())}</wsnt:CurrentTime></wsnt:RenewResponse>")

    async def _op_Unsubscribe(self, el: etree._Element, sid: str | None) -> str:
        sub = self._subscription(sid)
        sub.alive = False
        sub.wakeup.set()
        del self.subscriptions[sub.id]
        return "<wsnt:UnsubscribeResponse/>"

    # -- PTZ ---------------------------------------------------------------------------------
    async def _op_GetPresets(self, el: etree._Element, sid: str | None) -> str:
        self._profile(el)
        out = "".join(f'<tptz:Preset token="{t}"><tt:Name>{escape(n)}</tt:Name></tptz:Preset>'
                      for t, n in self.presets.items())
        return f"<tptz:GetPresetsResponse>{out}</tptz:GetPresetsResponse>"

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
