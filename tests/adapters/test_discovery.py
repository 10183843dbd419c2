"""WS-Discovery probing (``hub discover``): real UDP multicast across a veth pair into a network namespace
where an emulated camera answers (tests/support/wsd_device.py), unicast probes (directly and to a routed
subnet), hostile datagrams on the wire, dedupe, timeouts and the CLI. Message parsing and the snippets
are in test_discovery_messages.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import adapters.discovery
from adapters.discovery import (
    DiscoveryInputError,
    add_arguments,
    discover,
    resolve_interface,
    resolve_targets,
    run_cli,
)
from adapters.wsdiscovery import NVT, ParsedMessage, parse_message
from tests.support.wsd_device import (
    BILLION_LAUGHS,
    GROUP,
    XXE,
    EmulatedCamera,
    WsdResponder,
    probe_matches,
)

ROOT = Path(__file__).resolve().parents[2]


# -- a network namespace joined to this one by a veth pair -------------------------------------------
def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")


@dataclass
class Netns:
    name: str
    host_if: str
    dev_if: str
    host_ip: str  # this namespace's end of the veth
    dev_ip: str  # the camera namespace's end
    routed_ip: str  # an address in the camera namespace reachable only through a route via dev_ip


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    """Fails (never skips) when network namespaces cannot be created: the multicast tests need them."""
    tag = f"{os.getpid() % 100000:05d}{random.randrange(16**3):03x}"
    used = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    a, b = 0, 0
    for _ in range(100):
        a, b = random.randrange(100, 250), random.randrange(0, 254, 2)
        if f"10.{a}.{b}." not in used and f"10.{a}.{b + 1}." not in used:
            break
    ns = Netns(f"wsd-test-{tag}", f"wh{tag}", f"wd{tag}",
               f"10.{a}.{b}.1", f"10.{a}.{b}.2", f"10.{a}.{b + 1}.1")
    _ip("netns", "add", ns.name)
    try:
        _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.dev_if, "netns", ns.name)
        _ip("addr", "add", f"{ns.host_ip}/24", "dev", ns.host_if)
        _ip("link", "set", ns.host_if, "multicast", "on", "up")
        _ip("-n", ns.name, "link", "set", "lo", "up")
        _ip("-n", ns.name, "addr", "add", f"{ns.dev_ip}/24", "dev", ns.dev_if)
        _ip("-n", ns.name, "link", "set", ns.dev_if, "multicast", "on", "up")
        _ip("-n", ns.name, "route", "add", "224.0.0.0/4", "dev", ns.dev_if)
        _ip("-n", ns.name, "addr", "add", f"{ns.routed_ip}/32", "dev", "lo")  # another subnet, behind dev_ip
        _ip("route", "add", f"10.{a}.{b + 1}.0/24", "via", ns.dev_ip, "dev", ns.host_if)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False)  # takes the veth pair and route along
        subprocess.run(["ip", "link", "del", ns.host_if], capture_output=True, check=False)


@dataclass
class NsResponder:
    """tests/support/wsd_device.py running as a child inside the camera namespace."""

    netns: Netns
    args: list[str]
    ready: dict[str, Any] = field(default_factory=dict)
    probes: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> NsResponder:
        cmd = ["ip", "netns", "exec", self.netns.name, sys.executable, "-m", "tests.support.wsd_device",
               *self.args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        got_ready = threading.Event()

        def read_stdout() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("READY "):
                    self.ready = json.loads(line[6:])
                    got_ready.set()
                elif line.strip():
                    self.probes.append(json.loads(line))

        def read_stderr() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            self.stderr.extend(self.proc.stderr)

        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()
        if not got_ready.wait(15):
            self.__exit__(None, None, None)
            raise RuntimeError("the WS-Discovery responder did not start: " + "".join(self.stderr)[-2000:])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the responder exits when its stdin closes
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hub discover")
    add_arguments(parser)
    return parser.parse_args(list(argv))


# -- multicast across a real interface ----------------------------------------------------------------
async def test_multicast_probe_crosses_the_interface_and_finds_every_camera(netns: Netns) -> None:
    args = ["--interface", netns.dev_if, "--camera", "Gate 东门", "--camera", "Yard", "--http-port", "8080",
            "--location", "city/Foshan"]
    with NsResponder(netns, args) as dev:
        result = await discover(interfaces=[netns.host_if], ttl=3, repeat=2, timeout_s=1.0)
    assert [d.host for d in result.devices] == [netns.dev_ip, netns.dev_ip]
    by_name = {d.name: d for d in result.devices}
    assert set(by_name) == {"Gate 东门", "Yard"}
    gate = by_name["Gate 东门"]
    assert gate.address == next(c["address"] for c in dev.ready["cameras"] if c["name"] == "Gate 东门")
    assert gate.xaddrs == (f"http://{netns.dev_ip}:8080/onvif/device_service",)
    assert (gate.port, by_name["Yard"].port) == (8080, 8081)
    assert gate.hardware == "EMU-IPC-1000" and gate.location == "city/Foshan" and gate.source == netns.dev_ip
    assert NVT in gate.types and gate.metadata_version == 1
    # The probe really arrived as multicast to the group, with our TTL, from our end of the veth.
    assert len(dev.probes) == 2
    for probe in dev.probes:
        assert probe["destination"] == GROUP and probe["ttl"] == 3 and probe["source"][0] == netns.host_ip
        assert probe["types"] == [NVT]
    # Two probes x two cameras: four answers, two of them duplicates folded into the first.
    s = result.stats
    assert (s.probes_sent, s.datagrams, s.matches, s.duplicates, s.ignored) == (2, 4, 4, 2, 0)
    assert result.interfaces[0].address == netns.host_ip


async def test_interface_may_be_given_by_address_and_ttl_defaults_to_one(netns: Netns) -> None:
    with NsResponder(netns, ["--interface", netns.dev_ip, "--camera", "Gate"]) as dev:
        result = await discover(interfaces=[netns.host_ip], repeat=1, timeout_s=0.5)
    assert [d.name for d in result.devices] == ["Gate"]
    assert [(p["destination"], p["ttl"]) for p in dev.probes] == [(GROUP, 1)]


def test_hello_is_multicast_on_start_and_parses_as_a_device(netns: Netns) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_IP, 49, 0)  # IP_MULTICAST_ALL off: only this interface's group
    listener.bind((GROUP, 3702))
    listener.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                        socket.inet_aton(GROUP) + socket.inet_aton(netns.host_ip))
    listener.settimeout(5)
    with listener, NsResponder(netns, ["--interface", netns.dev_if, "--camera", "Porch", "--hello"]):
        data, addr = listener.recvfrom(65535)
    msg = parse_message(data, addr[0])
    assert msg.kind == "hello" and addr[0] == netns.dev_ip
    assert [(d.name, d.host, d.port) for d in msg.devices] == [("Porch", netns.dev_ip, 8080)]


def test_cli_prints_snippets_for_multicast_answers(netns: Netns, capsys: pytest.CaptureFixture[str]) -> None:
    with NsResponder(netns, ["--interface", netns.dev_if, "--camera", "Gate", "--camera", "Gate"]):
        code = run_cli(_cli("--interface", netns.host_if, "--timeout", "0.8", "--username", "viewer"))
    out, err = capsys.readouterr()
    assert code == 0
    assert f"on {netns.host_if} ({netns.host_ip}), ttl 1" in err and "2 device(s)" in err
    items = yaml.safe_load(out)
    # Two cameras with the same name (distinct endpoints: one per HTTP port) get distinct ids.
    assert [i["id"] for i in items] == ["gate", f"gate-{netns.dev_ip.replace('.', '-')}"]
    assert items[0] == {"kind": "onvif", "id": "gate", "name": "Gate", "host": netns.dev_ip, "port": 8080,
                        "username": "viewer", "password": "${CAM_GATE_PASSWORD}"}


def test_cli_when_nothing_answers_says_what_to_check(netns: Netns,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    code = run_cli(_cli("-i", netns.host_if, "--timeout", "0.4", "--repeat", "1"))
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert "--interface" in err and "--unicast" in err and "3702" in err and "firewall" in err
    assert 0.4 <= elapsed < 2.5  # the 0.4 s answer window plus a new event loop, on a loaded machine


def test_hub_discover_without_a_multicast_route_reports_the_send_error() -> None:
    name = f"wsd-empty-{os.getpid()}-{random.randrange(16**4):04x}"
    _ip("netns", "add", name)  # nothing in it: not even lo is up, so there is no route anywhere
    try:
        proc = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-m", "hub.cli", "discover",
                               "--timeout", "0.3"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              check=False)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert proc.returncode == 1, proc.stderr
    assert "2 probe(s) could not be sent: [Errno 101] Network is unreachable" in proc.stderr
    assert proc.stdout == ""


# -- unicast ------------------------------------------------------------------------------------------
def test_unicast_cidr_scan_reaches_a_routed_camera(netns: Netns, capsys: pytest.CaptureFixture[str]) -> None:
    routed_net = netns.routed_ip.rsplit(".", 1)[0] + ".0/29"
    args = ["--bind", netns.routed_ip, "--xaddr-ip", netns.routed_ip, "--camera", "Far Gate",
            "--http-port", "80"]
    with NsResponder(netns, args) as dev:
        code = run_cli(_cli("--no-multicast", "--unicast", routed_net, "--rate", "50", "--timeout", "0.5",
                            "--json"))
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    found = [(d["host"], d["port"], d["name"]) for d in report["devices"]]
    assert found == [(netns.routed_ip, 80, "Far Gate")]
    assert report["devices"][0]["config"]["password"] == "${CAM_FAR_GATE_PASSWORD}"
    # Six hosts in a /29, the one that answered is not probed again: 6 + 5 probes, paced at 50/s.
    assert report["stats"]["probes_sent"] == 11 and "6 unicast target(s)" in err
    assert [p["destination"] for p in dev.probes] == [netns.routed_ip]


async def test_unicast_to_a_port_on_loopback_and_rate_limit() -> None:
    async with WsdResponder([EmulatedCamera("127.0.0.1", name="Lobby")], bind="127.0.0.1", port=0) as dev:
        t0 = time.monotonic()
        result = await discover(unicast=[f"127.0.0.1:{dev.port}", "127.0.0.2:9,127.0.0.3:9"],
                                multicast=False, repeat=1, rate=10, timeout_s=0.3)
        elapsed = time.monotonic() - t0
    assert [(d.name, d.host, d.port) for d in result.devices] == [("Lobby", "127.0.0.1", 80)]
    assert result.targets == 3 and result.stats.probes_sent == 3
    assert 0.2 + 0.3 <= elapsed < 2.0  # three sends at 10/s take 0.2 s, then the 0.3 s answer window


async def test_probe_targets_are_parsed_capped_and_validated() -> None:
    targets = await resolve_targets(["10.9.8.0/30", "localhost:4000", "10.9.8.1"], port=3702)
    assert targets == [("10.9.8.1", 3702), ("10.9.8.2", 3702), ("127.0.0.1", 4000)]
    assert len(await resolve_targets(["10.0.0.0/22"])) == 1022
    for bad in (["10.0.0.0/21"], ["10.0.0.0/33"], ["no-such-host.invalid"], ["10.0.0.1:99999"], ["fe80::1"]):
        with pytest.raises(DiscoveryInputError):
            await resolve_targets(bad)
    with pytest.raises(DiscoveryInputError, match="more than 3"):
        await resolve_targets(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], max_targets=3)


def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["-i", "nosuchif0"], ["-i", "192.0.2.77"], ["--unicast", "10.0.0.0/8", "--no-multicast"],
                 ["--ttl", "0"], ["--timeout", "0"], ["--no-multicast"]):
        assert run_cli(_cli(*argv)) == 2, argv
        assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(DiscoveryInputError, match="lo"):
        resolve_interface("nosuchif0")  # the message lists the interfaces there are
    assert resolve_interface("lo").address == "127.0.0.1"


# -- hostile and odd answers -------------------------------------------------------------------------
def _printer(message_id: str) -> bytes:
    """A WS-Discovery device that is not a camera but answers every probe (some printers do)."""
    data = probe_matches(EmulatedCamera("127.0.0.1", name="printer", types="wsdp:Device"), message_id)
    declare = b'xmlns:wsdp="http://schemas.xmlsoap.org/ws/2006/02/devprof" xmlns:tds='
    data = data.replace(b"xmlns:tds=", declare)
    return data.replace(b"onvif://www.onvif.org/", b"http://printer.example/")


async def test_garbage_huge_and_foreign_datagrams_are_ignored_and_counted() -> None:
    malformed = [b"garbage", b"\x00\xff" * 50, "<é/>".encode("utf-16"), BILLION_LAUGHS, XXE,
                 b"<a>not soap</a>", b"<Envelope/>"]
    huge = probe_matches(EmulatedCamera("127.0.0.1", name="x" * 40_000), "urn:uuid:whatever")
    stale = probe_matches(EmulatedCamera("127.0.0.1", name="stale"), "urn:uuid:someone-else")
    noise: list[bytes | Callable[[str], bytes]] = [*malformed, huge, stale, _printer]
    async with WsdResponder([EmulatedCamera("127.0.0.1", name="Survivor")], bind="127.0.0.1", port=0,
                            noise=noise) as dev:
        result = await discover(unicast=[f"127.0.0.1:{dev.port}"], multicast=False, repeat=1, timeout_s=0.5)
    assert [d.name for d in result.devices] == ["Survivor"]
    s = result.stats
    assert (s.malformed, s.oversize, s.unrelated, s.not_onvif, s.ignored) == (7, 1, 1, 1, 10), s
    assert (s.datagrams, s.matches) == (11, 1)
    assert len(huge) > 32 * 1024


async def test_duplicates_and_multihomed_answers_fold_into_one_device() -> None:
    a = EmulatedCamera("127.0.0.1", name="Twin", endpoint="urn:uuid:11111111-2222-3333-4444-555555555555")
    b = EmulatedCamera("127.0.0.2", name="Twin", endpoint=a.endpoint, http_port=8000)
    async with WsdResponder([a], bind="127.0.0.1", port=0, copies=3) as one, \
            WsdResponder([b], bind="127.0.0.1", port=0) as two:
        result = await discover(unicast=[f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}"], multicast=False,
                                repeat=1, timeout_s=0.5)
    assert len(result.devices) == 1
    twin = result.devices[0]
    assert twin.xaddrs == (a.xaddr, b.xaddr)
    assert (twin.host, twin.port) == ("127.0.0.1", 80)  # the XAddr on the address that answered wins
    assert (result.stats.matches, result.stats.duplicates) == (4, 3)


async def test_answers_after_the_timeout_are_not_waited_for() -> None:
    async with WsdResponder([EmulatedCamera("127.0.0.1", name="Slow")], bind="127.0.0.1", port=0,
                            delay_s=3.0) as slow, \
            WsdResponder([EmulatedCamera("127.0.0.1", name="Quick")], bind="127.0.0.1", port=0,
                         delay_s=0.2) as quick:
        t0 = time.monotonic()
        result = await discover(unicast=[f"127.0.0.1:{slow.port}", f"127.0.0.1:{quick.port}"],
                                multicast=False, repeat=1, timeout_s=0.6)
        elapsed = time.monotonic() - t0
    assert [d.name for d in result.devices] == ["Quick"]  # Slow answers 3 s after the probe
    assert 0.6 <= elapsed < 2.0 and result.stats.elapsed_s < 2.0


class LoopErrors:
    """Collects what reaches the event loop's exception handler (an exception a protocol let escape)."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []

    def __enter__(self) -> LoopErrors:
        self.loop = asyncio.get_running_loop()
        self.previous = self.loop.get_exception_handler()
        self.loop.set_exception_handler(lambda _loop, context: self.contexts.append(context))
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.set_exception_handler(self.previous)


async def test_odd_metadata_version_text_on_the_wire_still_finds_the_camera() -> None:
    """"²" is ``str.isdigit()`` but not ``int()``-able; 5,000 digits exceed int()'s limit: neither may
    raise out of ``datagram_received`` (asyncio would log it and the answer would be lost)."""
    cameras = [EmulatedCamera("127.0.0.1", name="Superscript", metadata_version="²"),
               EmulatedCamera("127.0.0.1", name="Long", metadata_version="9" * 5000),
               EmulatedCamera("127.0.0.1", name="Plain", metadata_version="7")]
    with LoopErrors() as errors:
        async with WsdResponder(cameras, bind="127.0.0.1", port=0) as dev:
            result = await discover(unicast=[f"127.0.0.1:{dev.port}"], multicast=False, repeat=1,
                                    timeout_s=0.4)
    assert errors.contexts == []
    versions = {d.name: d.metadata_version for d in result.devices}
    assert versions == {"Superscript": None, "Long": None, "Plain": 7}
    assert result.stats.malformed == 0 and result.stats.matches == 3


async def test_a_parser_failure_is_counted_as_malformed_and_never_reaches_asyncio(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def fragile(data: bytes, source: str) -> ParsedMessage:
        if data.startswith(b"<boom"):
            raise RecursionError("a parser bug")  # anything but MalformedMessage
        return parse_message(data, source)

    monkeypatch.setattr(adapters.discovery, "parse_message", fragile)
    with LoopErrors() as errors:
        async with WsdResponder([EmulatedCamera("127.0.0.1", name="Survivor")], bind="127.0.0.1", port=0,
                                noise=[b"<boom/>", b"<boom/>"]) as dev:
            result = await discover(unicast=[f"127.0.0.1:{dev.port}"], multicast=False, repeat=1,
                                    timeout_s=0.4)
    assert errors.contexts == []
    assert [d.name for d in result.devices] == ["Survivor"]
    assert (result.stats.malformed, result.stats.datagrams) == (2, 3)
