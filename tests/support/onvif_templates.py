"""The SOAP 1.2 the emulated ONVIF camera (:mod:`tests.support.onvif_device`) answers with.

Pure functions from values to XML text: one per response body, plus the envelope and the fault.
Namespace prefixes are declared once on the envelope (:data:`DECLARATIONS`), as many cameras do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

ENV = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
TT = "http://www.onvif.org/ver10/schema"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
TEV = "http://www.onvif.org/ver10/events/wsdl"
SERVICE_NS = {
    "device": "http://www.onvif.org/ver10/device/wsdl",
    "media": "http://www.onvif.org/ver10/media/wsdl",
    "events": TEV,
    "ptz": "http://www.onvif.org/ver20/ptz/wsdl",
}
NS = {"env": ENV, "wsse": WSSE, "wsu": WSU, "tt": TT, "wsnt": WSNT, "tev": TEV,
      "tptz": SERVICE_NS["ptz"], "trt": SERVICE_NS["media"]}
DECLARATIONS = " ".join(f'xmlns:{p}="{u}"' for p, u in {
    "env": ENV, "tt": TT, "tds": SERVICE_NS["device"], "trt": SERVICE_NS["media"], "tev": TEV,
    "tptz": SERVICE_NS["ptz"], "wsnt": WSNT, "wsa": "http://www.w3.org/2005/08/addressing",
    "wstop": "http://docs.oasis-open.org/wsn/t-1", "ter": "http://www.onvif.org/ver10/error",
    "wsrf-rw": "http://docs.oasis-open.org/wsrf/rw-2",
    "tns1": "http://www.onvif.org/ver10/topics", "tnsvendor": "http://example.com/vendor/topics",
}.items())
DIALECT = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"


@dataclass(frozen=True)
class Profile:
    token: str
    width: int
    height: int
    stream_url: str
    ptz: bool = False


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def envelope(body: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope {DECLARATIONS}>'
            f"<env:Body>{body}</env:Body></env:Envelope>")


def fault(code: str, subcode: str, reason: str) -> str:
    return (f"<env:Fault><env:Code><env:Value>{code}</env:Value><env:Subcode><env:Value>{subcode}"
            f'</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">{escape(reason)}'
            "</env:Text></env:Reason></env:Fault>")


def _items(values: Mapping[str, str]) -> str:
    return "".join(f"<tt:SimpleItem Name={quoteattr(k)} Value={quoteattr(v)}/>" for k, v in values.items())


def notification(topic: str, source: Mapping[str, str], data: Mapping[str, str], operation: str,
                 now: dt.datetime) -> str:
    return (f'<wsnt:NotificationMessage><wsnt:Topic Dialect="{DIALECT}">{escape(topic)}</wsnt:Topic>'
            f'<wsnt:Message><tt:Message UtcTime="{iso(now)}" PropertyOperation="{operation}">'
            f"<tt:Source>{_items(source)}</tt:Source><tt:Data>{_items(data)}</tt:Data>"
            "</tt:Message></wsnt:Message></wsnt:NotificationMessage>")


# -- Device ------------------------------------------------------------------------------------------
def system_date_and_time(n: dt.datetime) -> str:
    return ("<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>NTP</tt:DateTimeType>"
            "<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime><tt:Time><tt:Hour>{n.hour}</tt:Hour><tt:Minute>{n.minute}</tt:Minute>"
            f"<tt:Second>{n.second}</tt:Second></tt:Time><tt:Date><tt:Year>{n.year}</tt:Year>"
            f"<tt:Month>{n.month}</tt:Month><tt:Day>{n.day}</tt:Day></tt:Date></tt:UTCDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>")


def device_information(info: Mapping[str, str]) -> str:
    fields = "".join(f"<tds:{k}>{escape(v)}</tds:{k}>" for k, v in info.items())
    return f"<tds:GetDeviceInformationResponse>{fields}</tds:GetDeviceInformationResponse>"


def services(base: str, names: Iterable[str]) -> str:
    out = "".join(f"<tds:Service><tds:Namespace>{SERVICE_NS[name]}</tds:Namespace>"
                  f"<tds:XAddr>{base}/{name}_service</tds:XAddr>"
                  "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version>"
                  "</tds:Service>" for name in names)
    return f"<tds:GetServicesResponse>{out}</tds:GetServicesResponse>"


def capabilities(base: str, ptz: bool) -> str:
    ptz_xml = f"<tt:PTZ><tt:XAddr>{base}/ptz_service</tt:XAddr></tt:PTZ>" if ptz else ""
    return ("<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{base}/device_service</tt:XAddr></tt:Device>"
            f"<tt:Events><tt:XAddr>{base}/events_service</tt:XAddr><tt:WSSubscriptionPolicySupport>false"
            "</tt:WSSubscriptionPolicySupport><tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
            "<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
            "</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>"
            f"<tt:Media><tt:XAddr>{base}/media_service</tt:XAddr><tt:StreamingCapabilities>"
            "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
            "<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
            f"{ptz_xml}</tds:Capabilities></tds:GetCapabilitiesResponse>")


# -- Media -------------------------------------------------------------------------------------------
def _profile(p: Profile) -> str:
    ptz = ('<tt:PTZConfiguration token="ptz0"><tt:Name>PTZ</tt:Name><tt:UseCount>1</tt:UseCount>'
           "<tt:NodeToken>node0</tt:NodeToken></tt:PTZConfiguration>") if p.ptz else ""
    return (f'<trt:Profiles token="{p.token}" fixed="true"><tt:Name>{p.token}</tt:Name>'
            '<tt:VideoSourceConfiguration token="vsc0"><tt:Name>vsc</tt:Name><tt:UseCount>2</tt:UseCount>'
            '<tt:SourceToken>vs0</tt:SourceToken><tt:Bounds x="0" y="0" width="1280" height="720"/>'
            f'</tt:VideoSourceConfiguration><tt:VideoEncoderConfiguration token="enc_{p.token}">'
            f"<tt:Name>enc_{p.token}</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
            f"<tt:Resolution><tt:Width>{p.width}</tt:Width><tt:Height>{p.height}</tt:Height></tt:Resolution>"
            "<tt:Quality>5</tt:Quality><tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type>"
            "<tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port><tt:TTL>0</tt:TTL>"
            "<tt:AutoStart>false</tt:AutoStart></tt:Multicast><tt:SessionTimeout>PT60S</tt:SessionTimeout>"
            f"</tt:VideoEncoderConfiguration>{ptz}</trt:Profiles>")


def profiles(items: Iterable[Profile]) -> str:
    return f"<trt:GetProfilesResponse>{''.join(map(_profile, items))}</trt:GetProfilesResponse>"


def media_uri(op: str, uri: str) -> str:
    return (f"<trt:{op}Response><trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
            f"</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:{op}Response>")


# -- Events ------------------------------------------------------------------------------------------
def event_properties() -> str:
    return ("<tev:GetEventPropertiesResponse><tev:TopicNamespaceLocation>"
            "http://www.onvif.org/onvif/ver10/topics/topicns.xml</tev:TopicNamespaceLocation>"
            "<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet><wstop:TopicSet><tns1:VideoSource "
            'wstop:topic="true"/><tns1:RuleEngine wstop:topic="true"/></wstop:TopicSet>'
            f"<wsnt:TopicExpressionDialect>{DIALECT}</wsnt:TopicExpressionDialect>"
            "<tev:MessageContentFilterDialect>http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"
            "</tev:MessageContentFilterDialect><tev:MessageContentSchemaLocation>"
            "http://www.onvif.org/onvif/ver10/schema/onvif.xsd</tev:MessageContentSchemaLocation>"
            "</tev:GetEventPropertiesResponse>")


def pullpoint_created(address: str, now: dt.datetime, termination: dt.datetime) -> str:
    return (f"<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference><wsa:Address>"
            f"{escape(address)}</wsa:Address></tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{iso(now)}</wsnt:CurrentTime><wsnt:TerminationTime>{iso(termination)}"
            "</wsnt:TerminationTime></tev:CreatePullPointSubscriptionResponse>")


def pull_messages(now: dt.datetime, termination: dt.datetime, messages: Iterable[str]) -> str:
    return (f"<tev:PullMessagesResponse><tev:CurrentTime>{iso(now)}</tev:CurrentTime>"
            f"<tev:TerminationTime>{iso(termination)}</tev:TerminationTime>{''.join(messages)}"
            "</tev:PullMessagesResponse>")


def renewed(now: dt.datetime, termination: dt.datetime) -> str:
    return (f"<wsnt:RenewResponse><wsnt:TerminationTime>{iso(termination)}</wsnt:TerminationTime>"
            f"<wsnt:CurrentTime>{iso(now)}</wsnt:CurrentTime></wsnt:RenewResponse>")


# -- PTZ ---------------------------------------------------------------------------------------------
def presets(items: Mapping[str, str]) -> str:
    out = "".join(f'<tptz:Preset token="{t}"><tt:Name>{escape(n)}</tt:Name></tptz:Preset>'
                  for t, n in items.items())
    return f"<tptz:GetPresetsResponse>{out}</tptz:GetPresetsResponse>"
