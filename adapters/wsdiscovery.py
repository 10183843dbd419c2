"""WS-Discovery messages for ONVIF: the Probe we send, and the ProbeMatches and Hello we parse.

Everything here is pure (no sockets): :mod:`adapters.discovery` does the networking. Datagrams come
from anyone on the network, so parsing is defensive: any DTD is refused before the XML parser runs (no
entity, internal or external, is ever expanded), UTF-16/32 input is refused (where that check could be
dodged), and at most 64 matches per message are read. Callers limit the datagram size.
"""

from __future__ import annotations

import io
import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

SOAP_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
ONVIF_NETWORK = "http://www.onvif.org/ver10/network/wsdl"
ONVIF_DEVICE = "http://www.onvif.org/ver10/device/wsdl"
ONVIF_SCOPE = "onvif://www.onvif.org/"
NVT = f"{{{ONVIF_NETWORK}}}NetworkVideoTransmitter"
ONVIF_TYPES = frozenset({NVT, f"{{{ONVIF_DEVICE}}}Device"})

_ENVELOPE_NS = frozenset({SOAP_ENV, "http://schemas.xmlsoap.org/soap/envelope/"})
_ADDRESSING_NS = frozenset({WSA, "http://www.w3.org/2005/08/addressing"})
_DISCOVERY_NS = frozenset({WSD, "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01"})
MAX_MATCHES_PER_MESSAGE = 64
_MAX_VERSION_DIGITS = 20  # an xs:unsignedInt has 10; int() refuses more than 4,300


class MalformedMessage(ValueError):
    """A datagram that is not a well-formed, safe WS-Discovery SOAP message."""


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    """One device that answered (a ProbeMatch or a Hello)."""

    address: str  # endpoint reference, usually urn:uuid:...; the identity used to deduplicate
    xaddrs: tuple[str, ...]  # device service URLs
    types: tuple[str, ...]  # qualified names, "{namespace}LocalName"
    scopes: tuple[str, ...]
    source: str  # the IP the answer came from
    metadata_version: int | None = None

    def scope_values(self, category: str) -> list[str]:
        """Decoded values of ``onvif://www.onvif.org/<category>/...`` scopes."""
        prefix = f"{ONVIF_SCOPE}{category}/".lower()
        return [unquote(s[len(prefix):]) for s in self.scopes if s.lower().startswith(prefix)]

    @property
    def name(self) -> str:
        return next(iter(self.scope_values("name")), "")

    @property
    def hardware(self) -> str:
        return next(iter(self.scope_values("hardware")), "")

    @property
    def location(self) -> str:
        return ", ".join(self.scope_values("location"))

    @property
    def is_onvif(self) -> bool:
        return (bool(ONVIF_TYPES.intersection(self.types))
                or any(t.rpartition("}")[2].rpartition(":")[2] == "NetworkVideoTransmitter"
                       for t in self.types)
                or any(s.lower().startswith(ONVIF_SCOPE) for s in self.scopes))

    @property
    def device_url(self) -> str | None:
        """The device service URL to use: one on the address that answered, else the first IPv4 one."""
        ranked: list[tuple[int, str]] = []
        for xaddr in self.xaddrs:
            try:
                parts = urlsplit(xaddr)
                host, _ = parts.hostname, parts.port
            except ValueError:
                continue
            if parts.scheme in ("http", "https") and host:
                ranked.append((0 if host == self.source else 1 if is_ipv4(host) else 2, xaddr))
        return min(ranked, key=lambda r: r[0])[1] if ranked else None

    @property
    def host(self) -> str:
        url = self.device_url
        return (urlsplit(url).hostname or self.source) if url else self.source

    @property
    def port(self) -> int:
        url = self.device_url
        if url is None:
            return 80
        parts = urlsplit(url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def merged(self, other: DiscoveredDevice) -> DiscoveredDevice:
        """The same endpoint seen again (another interface, a repeated probe): union of what it said."""
        version = self.metadata_version if other.metadata_version is None else other.metadata_version
        return DiscoveredDevice(self.address, _union(self.xaddrs, other.xaddrs),
                                _union(self.types, other.types), _union(self.scopes, other.scopes),
                                self.source, version)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "name": self.name, "hardware": self.hardware, "location": self.location,
                "host": self.host, "port": self.port, "device_url": self.device_url}


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    kind: str  # "probe_matches", "hello" or the body element's local name
    relates_to: str | None
    devices: list[DiscoveredDevice]


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))


def is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def probe_message(message_id: str) -> bytes:
    """A WS-Discovery Probe for ONVIF network video transmitters."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:a="{WSA}" xmlns:d="{WSD}" xmlns:dn="{ONVIF_NETWORK}">'
        f'<s:Header><a:Action s:mustUnderstand="1">{WSD}/Probe</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{WSA}/role/anonymous</a:Address></a:ReplyTo>"
        '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>'
        "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>"
    ).encode()


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _child(parent: ET.Element, namespaces: frozenset[str], local: str) -> ET.Element | None:
    for child in parent:
        ns, name = _split(child.tag)
        if name == local and ns in namespaces:
            return child
    return None


def _words(parent: ET.Element, namespaces: frozenset[str], local: str) -> list[str]:
    el = _child(parent, namespaces, local)
    return (el.text or "").split() if el is not None else []


def parse_message(data: bytes, source: str) -> ParsedMessage:
    """Parse a ProbeMatches or Hello datagram from ``source`` (an IP). Raises :class:`MalformedMessage`."""
    if b"\x00" in data or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise MalformedMessage("not UTF-8 text")
    upper = data.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise MalformedMessage("a DTD is not allowed")
    prefixes: dict[str, str] = {}
    root: ET.Element | None = None
    try:
        for event, item in ET.iterparse(io.BytesIO(data), events=("start-ns", "start")):
            if event == "start-ns":
                prefix, uri = item
                prefixes.setdefault(prefix, uri)
            elif root is None:
                root = item
    except ET.ParseError as exc:
        raise MalformedMessage(f"not XML: {exc}") from None
    if root is None or _split(root.tag)[1] != "Envelope" or _split(root.tag)[0] not in _ENVELOPE_NS:
        raise MalformedMessage("not a SOAP envelope")
    env = frozenset({_split(root.tag)[0]})
    header, body = _child(root, env, "Header"), _child(root, env, "Body")
    if body is None or len(body) == 0:
        raise MalformedMessage("SOAP envelope without a body")
    relates = _child(header, _ADDRESSING_NS, "RelatesTo") if header is not None else None
    relates_to = (relates.text or "").strip() if relates is not None else None
    content = body[0]
    ns, local = _split(content.tag)
    if ns not in _DISCOVERY_NS or local not in ("ProbeMatches", "Hello"):
        return ParsedMessage(local, relates_to, [])
    if local == "ProbeMatches":
        matches = [m for m in content if _split(m.tag) == (ns, "ProbeMatch")]
    else:
        matches = [content]
    devices = [_device(m, prefixes, source) for m in matches[:MAX_MATCHES_PER_MESSAGE]]
    return ParsedMessage("probe_matches" if local == "ProbeMatches" else "hello", relates_to, devices)


def _device(match: ET.Element, prefixes: dict[str, str], source: str) -> DiscoveredDevice:
    epr = _child(match, _DISCOVERY_NS | _ADDRESSING_NS, "EndpointReference")
    address_el = _child(epr, _ADDRESSING_NS, "Address") if epr is not None else None
    address = (address_el.text or "").strip() if address_el is not None else ""
    xaddrs = tuple(_words(match, _DISCOVERY_NS, "XAddrs"))
    if not address:
        if not xaddrs:
            raise MalformedMessage("a match without an endpoint reference or XAddrs")
        address = xaddrs[0]  # broken firmware: fall back on the device URL as identity
    types = tuple(_qname(t, prefixes) for t in _words(match, _DISCOVERY_NS, "Types"))
    version = _metadata_version("".join(_words(match, _DISCOVERY_NS, "MetadataVersion")))
    return DiscoveredDevice(address, xaddrs, types, tuple(_words(match, _DISCOVERY_NS, "Scopes")), source,
                            version)


def _metadata_version(text: str) -> int | None:
    """An xs:unsignedInt, or ``None``: not ``str.isdigit()`` (true for "²", which ``int()`` refuses)."""
    if not text.isascii() or not text.isdecimal() or len(text) > _MAX_VERSION_DIGITS:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _qname(text: str, prefixes: dict[str, str]) -> str:
    prefix, sep, local = text.rpartition(":")
    uri = prefixes.get(prefix if sep else "")
    return f"{{{uri}}}{local}" if uri else text
