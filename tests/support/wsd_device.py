"""The device side of WS-Discovery, for tests: a far-edge fake of ONVIF cameras announcing themselves.

A :class:`WsdResponder` listens on UDP (the 239.255.255.250 group on a chosen interface, and unicast)
and answers each matching Probe with one ProbeMatches datagram per emulated camera, sent back to the
prober, as cameras do. It optionally multicasts a Hello when it starts. Every probe it sees is recorded
with the destination address and TTL it arrived with (``IP_PKTINFO``/``IP_RECVTTL``), so tests can
prove a probe really crossed an interface as multicast.

In-process (asyncio)::

    async with WsdResponder([EmulatedCamera("127.0.0.1", name="Gate")], bind="127.0.0.1", port=0) as r:
        ... probe 127.0.0.1:r.port ...

As a child process (e.g. inside a network namespace; it exits when its stdin closes)::

    python -m tests.support.wsd_device --interface veth1 --camera "Gate" --camera "Yard" --hello

It prints ``READY {"port": ...}`` once listening and one JSON line per probe received.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import io
import json
import random
import signal
import socket
import struct
import sys
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

GROUP = "239.255.255.250"
SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
DN = "http://www.onvif.org/ver10/network/wsdl"
TDS = "http://www.onvif.org/ver10/device/wsdl"
IP_PKTINFO, IP_RECVTTL, IP_TTL_CMSG, IP_MULTICAST_ALL = 8, 12, 2, 49


def interface_address(name_or_ip: str) -> str:
    """The IPv4 address of an interface given by name, or the address itself."""
    with contextlib.suppress(OSError):
        socket.inet_aton(name_or_ip)
        return name_or_ip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name_or_ip.encode()[:15]))
    return socket.inet_ntoa(raw[20:24])


@dataclass(frozen=True)
class EmulatedCamera:
    """One camera: what it answers with. ``ip``/``http_port`` make its XAddr."""

    ip: str
    name: str = "Emulated Camera"
    http_port: int = 80
    hardware: str = "EMU-IPC-1000"
    location: str = "city/Testville"
    endpoint: str = ""  # urn:uuid:...; default: derived from name, ip and port (stable across runs)
    types: str = "dn:NetworkVideoTransmitter tds:Device"
    extra_xaddrs: tuple[str, ...] = ()
    metadata_version: str = "1"  # the element's text, verbatim: broken firmware writes odd things here

    @property
    def address(self) -> str:
        return self.endpoint or f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{self.name}@{self.xaddr}')}"

    @property
    def xaddr(self) -> str:
        return f"http://{self.ip}:{self.http_port}/onvif/device_service"

    def qualified_types(self) -> set[str]:
        known = {"dn": DN, "tds": TDS}
        return {f"{{{known.get(t.partition(':')[0], '')}}}{t.partition(':')[2]}" for t in self.types.split()}

    def scopes(self) -> str:
        base = "onvif://www.onvif.org/"
        return " ".join([f"{base}type/video_encoder", f"{base}Profile/Streaming",
                         f"{base}name/{quote(self.name)}", f"{base}hardware/{quote(self.hardware)}",
                         f"{base}location/{self.location}"])

    def body(self) -> str:
        xaddrs = " ".join([self.xaddr, *self.extra_xaddrs])
        return (f"<wsa:EndpointReference><wsa:Address>{self.address}</wsa:Address></wsa:EndpointReference>"
                f"<d:Types>{self.types}</d:Types><d:Scopes>{_esc(self.scopes())}</d:Scopes>"
                f"<d:XAddrs>{_esc(xaddrs)}</d:XAddrs><d:MetadataVersion>{_esc(self.metadata_version)}"
                "</d:MetadataVersion>")


# Hostile datagrams: a DTD with nested entities (exponential expansion) and an external entity (XXE).
BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                  b"<l>&b;</l>")
XXE = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _envelope(action: str, header_extra: str, body: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP}" xmlns:wsa="{WSA}" xmlns:d="{WSD}" '
            f'xmlns:dn="{DN}" xmlns:tds="{TDS}"><SOAP-ENV:Header>'
            f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>{header_extra}"
            f"<wsa:Action>{WSD}/{action}</wsa:Action>"
            f'<d:AppSequence InstanceId="{random.randint(1, 2**31)}" MessageNumber="1"/>'
            f"</SOAP-ENV:Header><SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>").encode()


def probe_matches(camera: EmulatedCamera, relates_to: str) -> bytes:
    return _envelope("ProbeMatches",
                     f"<wsa:RelatesTo>{_esc(relates_to)}</wsa:RelatesTo>"
                     f"<wsa:To>{WSA}/role/anonymous</wsa:To>",
                     f"<d:ProbeMatches><d:ProbeMatch>{camera.body()}</d:ProbeMatch></d:ProbeMatches>")


def hello(camera: EmulatedCamera) -> bytes:
    return _envelope("Hello", "<wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>",
                     f"<d:Hello>{camera.body()}</d:Hello>")


def parse_probe(data: bytes) -> tuple[str, list[str]] | None:
    """(MessageID, requested types as "{ns}local") of a Probe, or None for anything else."""
    prefixes: dict[str, str] = {}
    root = None
    try:
        for event, item in ET.iterparse(io.BytesIO(data), events=("start-ns", "start")):
            if event == "start-ns":
                prefixes.setdefault(item[0], item[1])
            elif root is None:
                root = item
    except ET.ParseError:
        return None
    if root is None:
        return None
    probe = root.find(f"{{{SOAP}}}Body/{{{WSD}}}Probe")
    message_id = root.findtext(f"{{{SOAP}}}Header/{{{WSA}}}MessageID")
    if probe is None or not message_id:
        return None
    types = []
    for qname in (probe.findtext(f"{{{WSD}}}Types") or "").split():
        prefix, _, local = qname.rpartition(":")
        types.append(f"{{{prefixes.get(prefix, '')}}}{local}")
    return message_id.strip(), types


@dataclass
class ProbeSeen:
    source: tuple[str, int]
    destination: str  # the IP header's destination: 239.255.255.250 for multicast
    ttl: int | None
    types: list[str]


@dataclass
class WsdResponder:
    """Answers Probes for ``cameras``. ``noise``: datagrams sent to the prober before each answer
    (garbage, oversize, hostile XML; a callable gets the probe's MessageID); ``copies``: each answer
    is sent this many times; ``delay_s``: wait before answering (real cameras wait 0-500 ms)."""

    cameras: Sequence[EmulatedCamera]
    bind: str = "0.0.0.0"
    port: int = 3702
    interface: str | None = None  # join the multicast group on this interface (name or IP)
    send_hello: bool = False
    noise: Sequence[bytes | Callable[[str], bytes]] = ()
    copies: int = 1
    delay_s: float = 0.0
    on_probe: Callable[[ProbeSeen], None] | None = None
    probes: list[ProbeSeen] = field(default_factory=list)
    answers_sent: int = 0
    _sock: socket.socket | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> WsdResponder:
        self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)  # only groups this socket joined
        sock.bind((self.bind, self.port))
        if self.interface is not None:
            local = interface_address(self.interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            socket.inet_aton(GROUP) + socket.inet_aton(local))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        if self.send_hello:
            for camera in self.cameras:
                sock.sendto(hello(camera), (GROUP, 3702))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, ancdata, _flags, addr = self._sock.recvmsg(65535, 256)
            except (BlockingIOError, InterruptedError):
                return
            destination, ttl = "", None
            for level, kind, payload in ancdata:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    destination = socket.inet_ntoa(payload[8:12])
                elif level == socket.IPPROTO_IP and kind == IP_TTL_CMSG:
                    ttl = struct.unpack("i", payload[:4])[0]
            probe = parse_probe(data)
            if probe is None:
                continue
            message_id, types = probe
            seen = ProbeSeen(addr, destination, ttl, types)
            self.probes.append(seen)
            if self.on_probe is not None:
                self.on_probe(seen)
            task = asyncio.create_task(self._answer(message_id, types, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, message_id: str, types: list[str], addr: tuple[str, int]) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self._sock is None:
            return
        for datagram in self.noise:
            self._sock.sendto(datagram(message_id) if callable(datagram) else datagram, addr)
        for camera in self.cameras:
            if types and not camera.qualified_types().intersection(types):
                continue  # asked for something this camera is not
            for _ in range(self.copies):
                self._sock.sendto(probe_matches(camera, message_id), addr)
                self.answers_sent += 1


async def _main(args: argparse.Namespace) -> None:
    ip = args.xaddr_ip or (interface_address(args.interface) if args.interface else "127.0.0.1")
    cameras = [EmulatedCamera(ip, name=name, http_port=args.http_port + i, hardware=args.hardware,
                              location=args.location)
               for i, name in enumerate(args.camera or ["Emulated Camera"])]

    def report(seen: ProbeSeen) -> None:
        row: dict[str, Any] = {"event": "probe", "source": list(seen.source), "destination": seen.destination,
                               "ttl": seen.ttl, "types": seen.types}
        print(json.dumps(row), flush=True)

    responder = WsdResponder(cameras, bind=args.bind, port=args.port, interface=args.interface,
                             send_hello=args.hello, copies=args.copies, delay_s=args.delay, on_probe=report)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Exit when the parent goes away (stdin closes), so a crashed test never leaves us behind.
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), loop.call_soon_threadsafe(stop.set)),
                     daemon=True).start()
    async with responder:
        print("READY " + json.dumps({"port": responder.port, "ip": ip,
                                     "cameras": [{"name": c.name, "address": c.address, "xaddr": c.xaddr}
                                                 for c in cameras]}), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="WS-Discovery responder emulating ONVIF cameras (tests)")
    p.add_argument("--interface", help="join 239.255.255.250 on this interface (name or IPv4)")
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=int, default=3702)
    p.add_argument("--camera", action="append", help="a camera name (repeat for several)")
    p.add_argument("--xaddr-ip", help="IP in the XAddr (default: the interface's address)")
    p.add_argument("--http-port", type=int, default=8080, help="XAddr port of the first camera (+1 each)")
    p.add_argument("--hardware", default="EMU-IPC-1000")
    p.add_argument("--location", default="city/Testville")
    p.add_argument("--hello", action="store_true", help="multicast a Hello per camera on start")
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--delay", type=float, default=0.0)
    asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    main()
