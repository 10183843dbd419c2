"""WS-Discovery messages and the config snippets made from them: ProbeMatches/Hello parsing (other
prefixes, hostile XML, any bytes, odd MetadataVersion text), camera ids, the YAML printed by ``hub
discover``, and one end-to-end run from a discovered snippet to a probed ONVIF camera."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.discovery import discover
from adapters.discovery_cli import camera_ids, config_snippet, password_env, render_yaml
from adapters.wsdiscovery import NVT, DiscoveredDevice, MalformedMessage, parse_message
from tests.support.wsd_device import BILLION_LAUGHS, XXE, EmulatedCamera, WsdResponder, hello, probe_matches


# -- message parsing ----------------------------------------------------------------------------------
def test_parses_a_probe_match_written_with_other_prefixes_and_soap_defaults() -> None:
    data = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope" '
        b'xmlns:w="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        b'xmlns:wsdd="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
        b'xmlns:nvt="http://www.onvif.org/ver10/network/wsdl"><Header>'
        b"<w:RelatesTo>urn:uuid:abc</w:RelatesTo></Header><Body><wsdd:ProbeMatches><wsdd:ProbeMatch>"
        b"<w:EndpointReference><w:Address>uuid:hik-1</w:Address></w:EndpointReference>"
        b"<wsdd:Types>nvt:NetworkVideoTransmitter</wsdd:Types>"
        b"<wsdd:Scopes> onvif://www.onvif.org/name/HIKVISION%20DS-2CD2143G2 "
        b"onvif://www.onvif.org/hardware/DS-2CD2143G2-I onvif://www.onvif.org/location/city/hangzhou\n"
        b"onvif://www.onvif.org/location/country/china</wsdd:Scopes>"
        b"<wsdd:XAddrs>http://[fe80::1]/onvif/device_service http://192.168.1.64/onvif/device_service"
        b"</wsdd:XAddrs><wsdd:MetadataVersion>10</wsdd:MetadataVersion>"
        b"</wsdd:ProbeMatch></wsdd:ProbeMatches></Body></Envelope>"
    )
    msg = parse_message(data, "192.168.1.64")
    assert (msg.kind, msg.relates_to) == ("probe_matches", "urn:uuid:abc")
    (d,) = msg.devices
    assert (d.address, d.name, d.hardware) == ("uuid:hik-1", "HIKVISION DS-2CD2143G2", "DS-2CD2143G2-I")
    assert d.location == "city/hangzhou, country/china" and d.types == (NVT,) and d.is_onvif
    assert (d.device_url, d.host, d.port, d.metadata_version) == (
        "http://192.168.1.64/onvif/device_service", "192.168.1.64", 80, 10)


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE, b"", b"<", "<é/>".encode("utf-16")])
def test_unsafe_or_broken_xml_is_refused_before_any_entity_is_expanded(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_message(data, "10.0.0.1")


def _with_version(text: str) -> bytes:
    return probe_matches(EmulatedCamera("10.0.0.1", name="v", metadata_version=text), "urn:uuid:x")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048) | st.text(max_size=512).map(str.encode))
@example(_with_version("²"))  # str.isdigit() but not int(): once raised ValueError out of the parser
@example(_with_version("9" * 5000))  # more digits than int() converts
def test_any_bytes_parse_or_raise_malformed_only(data: bytes) -> None:
    try:
        msg = parse_message(data, "10.0.0.1")
    except MalformedMessage:
        return
    assert all(d.address and d.source == "10.0.0.1" for d in msg.devices)


@pytest.mark.parametrize(("text", "version"), [
    ("7", 7), (" 12 ", 12), ("4294967295", 4294967295), ("²", None), ("٣", None), ("9" * 5000, None),
    ("-1", None), ("1e3", None), ("", None)])
def test_metadata_version_is_an_ascii_number_or_none(text: str, version: int | None) -> None:
    (device,) = parse_message(_with_version(text), "10.0.0.1").devices
    assert device.metadata_version == version


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
@example("²")
def test_any_metadata_version_text_parses_or_is_malformed(text: str) -> None:
    try:
        msg = parse_message(_with_version(text), "10.0.0.1")
    except MalformedMessage:  # e.g. a control character: not XML
        return
    (device,) = msg.devices
    assert device.metadata_version is None or device.metadata_version == int("".join(text.split()))


def test_hello_from_the_responder_parses() -> None:
    msg = parse_message(hello(EmulatedCamera("10.1.1.9", name="Porch")), "10.1.1.9")
    assert msg.kind == "hello" and msg.relates_to is None
    assert [(d.name, d.host, d.port) for d in msg.devices] == [("Porch", "10.1.1.9", 80)]


# -- snippets -----------------------------------------------------------------------------------------
def _device(name: str, host: str, port: int = 80) -> DiscoveredDevice:
    scopes = (f"onvif://www.onvif.org/name/{name}",) if name else ()
    return DiscoveredDevice(f"urn:uuid:{name}-{host}", (f"http://{host}:{port}/onvif/device_service",),
                            (NVT,), scopes, host)


def test_ids_are_slugs_unique_and_passwords_come_from_the_environment() -> None:
    devices = [_device("Gate", "10.0.0.5"), _device("Gate", "10.0.0.6"),
               _device("%E5%A4%A7%E9%97%A8", "10.0.0.7"), _device("", "10.0.0.8"),
               _device("North Gate (2F)", "10.0.0.9")]
    assert camera_ids(devices) == ["gate", "gate-10-0-0-6", "cam-10-0-0-7", "cam-10-0-0-8", "north-gate-2f"]
    assert password_env("cam-10-0-0-7") == "CAM_10_0_0_7_PASSWORD"
    assert password_env("north-gate-2f") == "CAM_NORTH_GATE_2F_PASSWORD"
    snippet = config_snippet(devices[2], "cam-10-0-0-7")
    assert snippet["name"] == "大门" and snippet["password"] == "${CAM_10_0_0_7_PASSWORD}"


def test_rendered_yaml_is_a_cameras_list_the_hub_config_accepts() -> None:
    devices = [_device("Gate", "10.0.0.5"), _device("Yard%0A%23evil: yes", "10.0.0.6", 8080)]
    text = render_yaml(devices, username="ops")
    items = yaml.safe_load(text)
    assert [i["id"] for i in items] == ["gate", "yard-evil-yes"]
    assert items[1]["name"] == "Yard #evil: yes"  # a hostile name stays one line of value, not YAML
    for item in items:
        assert set(item) == {"kind", "id", "name", "host", "port", "username", "password"}
        assert item["kind"] == "onvif" and item["username"] == "ops"
        assert isinstance(item["port"], int) and item["password"].startswith("${CAM_")
    assert all(line.startswith(("#", "- ", "  ")) for line in text.splitlines())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=60), min_size=1, max_size=6))
def test_any_names_render_to_valid_unique_ids_and_yaml(names: list[str]) -> None:
    from urllib.parse import quote

    from adapters.base import ID_PATTERN

    devices = [_device(quote(name), f"10.0.0.{i + 1}") for i, name in enumerate(names)]
    items = yaml.safe_load(render_yaml(devices))
    assert len({i["id"] for i in items}) == len(devices)
    for item, name in zip(items, names, strict=True):
        assert re.fullmatch(ID_PATTERN[1:-1], item["id"]) and "\n" not in item["name"]
        assert item["name"] == (" ".join(name.split()) or item["host"]) or not name.isprintable()
        assert re.fullmatch(r"\$\{CAM_[A-Z0-9_]+_PASSWORD\}", item["password"])


async def test_discovered_snippet_configures_a_working_onvif_camera() -> None:
    """Discover → paste the snippet into a hub config → the onvif adapter probes the real SOAP device."""
    from adapters.onvif import OnvifCameraConfig
    from adapters.registry import create, parse_config
    from hub.config_loader import parse_config as parse_hub_config
    from tests.support.onvif_device import OnvifDevice

    async with OnvifDevice(username="admin", password="s3cret-pass") as onvif, \
            WsdResponder([EmulatedCamera("127.0.0.1", name="Front Door", http_port=onvif.port)],
                         bind="127.0.0.1", port=0) as wsd:
        result = await discover(unicast=[f"127.0.0.1:{wsd.port}"], multicast=False, repeat=1, timeout_s=0.3)
        text = render_yaml(result.devices)
        env = {"CAM_FRONT_DOOR_PASSWORD": "s3cret-pass"}
        hub_config = parse_hub_config("cameras:\n" + text, "<discovered>", env=env)
        (camera,) = hub_config.cameras
        assert isinstance(camera, OnvifCameraConfig)
        assert (camera.id, camera.host, camera.port, camera.name) == ("front-door", "127.0.0.1", onvif.port,
                                                                      "Front Door")
        assert isinstance(parse_config(yaml.safe_load(text)[0]), OnvifCameraConfig)  # the registry agrees
        info = await create(camera).probe()
    assert (info.manufacturer, info.model) == ("Sanwang Test", "EMU-ONVIF-1")
