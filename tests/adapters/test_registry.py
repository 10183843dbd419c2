"""The adapter registry: in-tree kinds, entry points, import failures, config dispatch."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from pydantic import ValidationError

from adapters import registry
from adapters.base import Adapter, AdapterConfig, DeviceInfo
from adapters.generic import CameraConfig, UrlCamera
from hub.config_loader import parse_config
from hub.errors import ConfigError


def test_builtin_kinds_are_registered_and_import_cleanly() -> None:
    kinds = {e.kind for e in registry.entries()}
    assert {"rtsp", "mjpeg", "file", "snapshot", "onvif", "mqtt"} <= kinds
    assert registry.load_failures() == {}
    assert registry.adapter_class("rtsp") is UrlCamera


def test_unknown_kind_is_a_located_config_error_with_a_hint() -> None:
    text = "cameras:\n  - id: a\n    kind: onvfi\n    host: 10.0.0.1\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "hub.yaml")
    assert err.value.line == 3
    assert err.value.field == "cameras.0.kind"
    assert err.value.hint is not None
    assert "onvif" in err.value.hint


def test_kind_is_inferred_from_the_url_and_unknown_keys_name_their_line() -> None:
    cfg = parse_config("cameras:\n  - id: a\n    url: http://10.0.0.9/video.mjpg\n", "hub.yaml")
    assert isinstance(cfg.cameras[0], CameraConfig)
    assert cfg.cameras[0].kind == "mjpeg"
    with pytest.raises(ConfigError) as err:
        parse_config("cameras:\n  - id: a\n    url: rtsp://x/1\n    sub_ulr: rtsp://x/2\n", "hub.yaml")
    assert err.value.line == 4
    assert err.value.hint == "did you mean 'sub_url'?"


def test_a_source_kind_under_cameras_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a camera adapter"):
        parse_config("cameras:\n  - id: m\n    kind: mqtt\n", "hub.yaml")
    with pytest.raises(ConfigError, match="camera adapter; list it under cameras"):
        parse_config("sources:\n  - id: c\n    url: rtsp://x/1\n    kind: rtsp\n", "hub.yaml")


def test_ids_are_unique_across_cameras_devices_and_sources() -> None:
    text = ("cameras:\n  - id: x\n    url: rtsp://h/1\n"
            "devices:\n  - id: x\n    kind: door_contact\n    topic: t/x\n")
    with pytest.raises(ConfigError, match="unique"):
        parse_config(text, "hub.yaml")


def test_register_rejects_a_kind_that_is_not_a_literal_and_a_duplicate() -> None:
    class Loose(AdapterConfig):
        kind: str

    class LooseAdapter(Adapter[Loose]):
        config_model = Loose

        async def probe(self) -> DeviceInfo:
            raise NotImplementedError

    with pytest.raises(TypeError, match="Literal"):
        registry.register(LooseAdapter)

    class Clash(AdapterConfig):
        kind: Literal["rtsp"]

    class ClashAdapter(Adapter[Clash]):
        config_model = Clash

        async def probe(self) -> DeviceInfo:
            raise NotImplementedError

    with pytest.raises(ValueError, match="already registered"):
        registry.register(ClashAdapter)


@pytest.fixture
def broken_distribution(tmp_path: Path) -> Iterator[Path]:
    """A real installed distribution (dist-info on sys.path) whose adapter entry point cannot import."""
    info = tmp_path / "village_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: village-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[sanwang_hub.adapters]\nvillage-broken = no_such_module_xyz:Adapter\n"
    )
    sys.path.insert(0, str(tmp_path))
    registry.reload()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    registry.reload()


def test_an_adapter_that_fails_to_import_is_reported_not_fatal(broken_distribution: Path) -> None:
    failures = registry.load_failures()
    assert "village-broken (village-broken)" in failures
    assert "no_such_module_xyz" in failures["village-broken (village-broken)"]
    assert registry.adapter_class("rtsp") is UrlCamera  # everything else still works
    with pytest.raises(ConfigError) as err:
        registry.adapter_class("village-broken")
    assert err.value.hint is not None
    assert "failed to import" in err.value.hint


def test_parse_config_validation_error_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        registry.parse_config({"kind": "snapshot", "id": "s", "url": "ftp://x"})
    assert "url" in registry.validation_message(err.value)


def test_the_hub_reports_a_failed_adapter_import_in_health(broken_distribution: Path, tmp_path: Path) -> None:
    from hub.app import Hub
    from hub.config import HubConfig

    hub = Hub(HubConfig())
    tasks: dict[str, object] = {}
    hub._add_source_tasks(None, tmp_path, tasks)  # type: ignore[arg-type]
    assert hub.components["adapter:village-broken (village-broken)"] == "import_failed"
