"""Find ONVIF cameras with WS-Discovery (SOAP-over-UDP) and print config snippets: ``hub discover``.

A Probe for ``dn:NetworkVideoTransmitter`` goes to 239.255.255.250:3702 from the chosen interface(s)
and/or, for routed networks where multicast does not pass, by unicast to hosts and CIDR ranges (capped
and rate-limited). Answers are collected for ``timeout_s`` after the last probe, deduplicated by
endpoint reference, and returned as :class:`DiscoveredDevice` s. Pure asyncio and the standard
library; datagrams over ``max_datagram`` bytes are dropped unparsed, the rest parsed safely by
:mod:`adapters.wsdiscovery`. The command line and the config snippets it prints live in
:mod:`adapters.discovery_cli` (``add_arguments`` and ``run_cli`` are re-exported here).
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import logging
import random
import socket
import struct
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.wsdiscovery import DiscoveredDevice, MalformedMessage, is_ipv4, parse_message, probe_message
from hub.errors import HubError

if TYPE_CHECKING:
    from adapters.discovery_cli import add_arguments, run_cli

__all__ = [
    "DiscoveredDevice", "DiscoveryInputError", "DiscoveryResult", "DiscoveryStats", "Interface",
    "add_arguments", "discover", "resolve_interface", "resolve_targets", "run_cli",
]
_CLI_NAMES = frozenset({"add_arguments", "run_cli"})

log = logging.getLogger(__name__)

MULTICAST_GROUP = "239.255.255.250"
WSD_PORT = 3702
MAX_DATAGRAM = 32 * 1024  # larger answers are dropped unparsed (real ProbeMatches are 1-4 KiB)
MAX_TARGETS = 1024  # unicast addresses per run unless raised; a /22
MAX_TARGETS_CEILING = 65536
MAX_DEVICES = 4096
_SIOCGIFADDR, _SIOCGIFFLAGS, _IFF_UP, _IFF_MULTICAST = 0x8915, 0x8913, 0x1, 0x1000


class DiscoveryInputError(HubError, ValueError):
    """An interface, target or option given to discovery is unusable."""


@dataclass(slots=True)
class DiscoveryStats:
    probes_sent: int = 0
    send_errors: int = 0  # sends the kernel refused (no route to the network, no multicast route)
    datagrams: int = 0
    matches: int = 0  # ONVIF matches accepted, duplicates included
    duplicates: int = 0
    malformed: int = 0  # not XML, not SOAP, a DTD, missing endpoint
    oversize: int = 0  # longer than max_datagram: dropped unparsed
    unrelated: int = 0  # well-formed but not an answer to our probe
    not_onvif: int = 0  # answered with types that are not ONVIF (printers, PCs)
    elapsed_s: float = 0.0
    first_error: str = ""  # the first send error, e.g. "[Errno 101] Network is unreachable"

    @property
    def ignored(self) -> int:
        return self.malformed + self.oversize + self.unrelated + self.not_onvif


@dataclass(slots=True)
class DiscoveryResult:
    devices: list[DiscoveredDevice]
    stats: DiscoveryStats
    interfaces: list[Interface] = field(default_factory=list)
    targets: int = 0


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    address: str  # its IPv4 address, used for IP_MULTICAST_IF
    warning: str = ""  # e.g. "interface eth1 is down"


# -- where to probe ---------------------------------------------------------------------------------
def resolve_interface(spec: str) -> Interface:
    """An interface by name (``eth0``) or by one of its IPv4 addresses."""
    if is_ipv4(spec):
        return Interface(spec, spec)
    names = sorted(name for _, name in socket.if_nameindex())
    if spec not in names:
        raise DiscoveryInputError(f"no network interface {spec!r}; have: {', '.join(names)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("256s", spec.encode()[:15])
        try:
            raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, request)
        except OSError:
            raise DiscoveryInputError(f"interface {spec!r} has no IPv4 address") from None
        flags = struct.unpack("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, request)[16:18])[0]
    warning = "" if flags & _IFF_UP else f"interface {spec} is down"
    if not warning and not flags & _IFF_MULTICAST:
        warning = f"interface {spec} does not have the MULTICAST flag (ip link set {spec} multicast on)"
    return Interface(spec, socket.inet_ntoa(raw[20:24]), warning)


async def resolve_targets(specs: Sequence[str], port: int = WSD_PORT,
                          max_targets: int = MAX_TARGETS) -> list[tuple[str, int]]:
    """Unicast targets from ``HOST``, ``IP``, ``IP:PORT`` or ``CIDR`` specs (comma-separated allowed)."""
    loop = asyncio.get_running_loop()
    out: dict[tuple[str, int], None] = {}
    for spec in (s.strip() for item in specs for s in item.split(",")):
        if not spec:
            continue
        if "/" in spec:
            try:
                net = ipaddress.IPv4Network(spec, strict=False)
            except ValueError:
                raise DiscoveryInputError(f"{spec!r} is not an IPv4 CIDR range") from None
            if net.num_addresses > max_targets:
                raise DiscoveryInputError(f"{spec} has {net.num_addresses} addresses, more than the "
                                          f"limit of {max_targets}; split it or raise --max-targets")
            hosts = net.hosts() if net.prefixlen < 31 else iter(net)
            out.update(((str(ip), port), None) for ip in hosts)
        else:
            host, target_port = spec, port
            if spec.count(":") == 1:
                host, _, port_text = spec.partition(":")
                if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                    raise DiscoveryInputError(f"bad port in {spec!r}")
                target_port = int(port_text)
            if not is_ipv4(host):
                try:
                    infos = await loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM)
                except (socket.gaierror, UnicodeError):
                    raise DiscoveryInputError(f"{spec!r} is not an IPv4 address, range or known host"
                                              ) from None
                host = str(infos[0][4][0])
            out[(host, target_port)] = None
        if len(out) > max_targets:
            raise DiscoveryInputError(f"more than {max_targets} unicast targets; raise --max-targets")
    return list(out)


# -- probing ----------------------------------------------------------------------------------------
class _Collector(asyncio.DatagramProtocol):
    """Receives answers on every probe socket; shared state lives on the instance."""

    def __init__(self, message_id: str, max_datagram: int, stats: DiscoveryStats,
                 on_device: Callable[[DiscoveredDevice], None] | None) -> None:
        self.message_id = message_id
        self.max_datagram = max_datagram
        self.stats = stats
        self.on_device = on_device
        self.devices: dict[str, DiscoveredDevice] = {}
        self.responders: set[tuple[str, int]] = set()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        stats = self.stats
        stats.datagrams += 1
        source = str(addr[0])
        if len(data) > self.max_datagram:
            stats.oversize += 1
            log.debug("dropped a %d-byte datagram from %s (limit %d)", len(data), source, self.max_datagram)
            return
        try:
            msg = parse_message(data, source)
        except MalformedMessage as exc:
            stats.malformed += 1
            log.debug("ignored a malformed datagram from %s: %s", source, exc)
            return
        except Exception as exc:  # a parser bug: never let one hostile datagram reach asyncio's handler
            stats.malformed += 1
            log.debug("ignored a datagram from %s the parser failed on: %s: %s", source,
                      type(exc).__name__, exc, exc_info=exc)
            return
        if msg.kind != "probe_matches" or (msg.relates_to and msg.relates_to != self.message_id):
            stats.unrelated += 1
            return
        self.responders.add((source, int(addr[1])))
        for device in msg.devices:
            if not device.is_onvif:
                stats.not_onvif += 1
                continue
            stats.matches += 1
            old = self.devices.get(device.address)
            if old is not None:
                stats.duplicates += 1
                self.devices[device.address] = old.merged(device)
            elif len(self.devices) < MAX_DEVICES:
                self.devices[device.address] = device
                if self.on_device is not None:
                    self.on_device(device)

    def error_received(self, exc: Exception) -> None:
        self.stats.send_errors += 1
        self.stats.first_error = self.stats.first_error or str(exc)
        log.debug("WS-Discovery socket error: %s", exc)


def _probe_socket(interface: Interface | None, ttl: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        if interface is not None:
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                socket.inet_aton(interface.address))
            except OSError as exc:
                raise DiscoveryInputError(f"cannot send multicast from {interface.address}: {exc.strerror}"
                                          " (is it an address of this machine?)") from None
        sock.bind(("0.0.0.0", 0))
    except BaseException:
        sock.close()
        raise
    return sock


async def discover(
    *,
    interfaces: Sequence[str] = (),
    unicast: Sequence[str] = (),
    multicast: bool = True,
    timeout_s: float = 3.0,
    ttl: int = 1,
    port: int = WSD_PORT,
    repeat: int = 2,
    rate: float = 200.0,
    max_targets: int = MAX_TARGETS,
    max_datagram: int = MAX_DATAGRAM,
    on_progress: Callable[[str], None] | None = None,
    on_device: Callable[[DiscoveredDevice], None] | None = None,
) -> DiscoveryResult:
    """Probe and collect answers until ``timeout_s`` after the last probe is sent.

    ``interfaces``: names or IPv4 addresses to send the multicast probe from (none: the system's
    default multicast route). ``unicast``: hosts/IPs/CIDR ranges probed directly, at most ``rate``
    probes a second and ``max_targets`` addresses. Every probe is sent ``repeat`` times (UDP is lossy);
    unicast repeats skip hosts that already answered. Raises :class:`DiscoveryInputError`.
    """
    if not 1 <= ttl <= 255:
        raise DiscoveryInputError("ttl must be 1..255")
    if not 0 < timeout_s <= 600 or not 0 < rate <= 100_000 or not 1 <= repeat <= 10:
        raise DiscoveryInputError("timeout must be in (0, 600] s, rate in (0, 100000]/s, repeat in 1..10")
    if not 0 < port < 65536 or not 1 <= max_targets <= MAX_TARGETS_CEILING or max_datagram < 512:
        raise DiscoveryInputError(f"bad port, max_targets (1..{MAX_TARGETS_CEILING}) or max_datagram")
    if not multicast and not unicast:
        raise DiscoveryInputError("nothing to probe: multicast is off and no unicast targets were given")
    say = on_progress or (lambda _text: None)
    resolved = [resolve_interface(spec) for spec in interfaces] if multicast else []
    targets = await resolve_targets(unicast, port, max_targets)
    stats = DiscoveryStats()
    message_id = f"urn:uuid:{uuid.uuid4()}"
    message = probe_message(message_id)
    collector = _Collector(message_id, max_datagram, stats, on_device)
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    transports: list[asyncio.DatagramTransport] = []
    try:
        plan: list[Interface | None] = list(resolved) if resolved else [None]
        mcast: list[tuple[asyncio.DatagramTransport, Interface | None]] = []
        for interface in plan:
            sock = _probe_socket(interface, ttl)
            try:
                transport, _ = await loop.create_datagram_endpoint(lambda: collector, sock=sock)
            except BaseException:
                sock.close()
                raise
            transports.append(transport)
            mcast.append((transport, interface))
        for _, iface in mcast if multicast else []:
            where = f"{iface.name} ({iface.address})" if iface and iface.name != iface.address else (
                iface.address if iface else "the default multicast route")
            say(f"probing {MULTICAST_GROUP}:{port} on {where}, ttl {ttl}")
            if iface and iface.warning:
                say(f"warning: {iface.warning}")
        if targets:
            say(f"probing {len(targets)} unicast target(s) at up to {rate:g}/s")
        for round_ in range(repeat):
            if round_:
                await asyncio.sleep(random.uniform(0.05, 0.25))  # SOAP-over-UDP repeat delay
            for transport, _ in mcast if multicast else []:
                transport.sendto(message, (MULTICAST_GROUP, port))
                stats.probes_sent += 1
            answered = set(collector.responders)
            start = time.monotonic()
            for i, target in enumerate(t for t in targets if t not in answered):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))  # pace to `rate`
                transports[0].sendto(message, target)
                stats.probes_sent += 1
        await asyncio.sleep(timeout_s)
    finally:
        for transport in transports:
            transport.close()
    stats.elapsed_s = round(time.monotonic() - t0, 3)
    devices = sorted(collector.devices.values(), key=lambda d: (_sort_key(d.host), d.port, d.address))
    return DiscoveryResult(devices, stats, resolved, len(targets))


def _sort_key(host: str) -> tuple[int, int, str]:
    return (0, int(ipaddress.IPv4Address(host)), "") if is_ipv4(host) else (1, 0, host)


def __getattr__(name: str) -> Any:
    """``add_arguments`` and ``run_cli`` from :mod:`adapters.discovery_cli`, imported on first use (it
    imports this module, so importing it here at the top would be circular)."""
    if name in _CLI_NAMES:
        from adapters import discovery_cli

        return getattr(discovery_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
