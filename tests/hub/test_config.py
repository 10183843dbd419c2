"""Config loading: env placeholders, HUB_* overrides, errors with file/line/field and a hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub.cli import main
from hub.config_loader import load_config, parse_config
from hub.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
hub:
  name: test
cameras:
  - id: cam1
    url: rtsp://admin:${CAM_PASS}@10.0.0.5:554/stream1
    grid: "440105001001"
    zones:
      - id: door
        polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]]
devices:
  - id: door1
    kind: door_contact
    topic: zigbee2mqtt/door1
    cameras: [cam1]
"""


def test_placeholders_are_substituted_from_the_environment() -> None:
    cfg = parse_config(GOOD, "x.yaml", env={"CAM_PASS": "s3cret"})
    assert cfg.cameras[0].url == "rtsp://admin:s3cret@10.0.0.5:554/stream1"
    assert cfg.devices[0].cameras == ["cam1"]


def test_missing_placeholder_names_variable_and_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD, "x.yaml", env={})
    err = info.value
    assert "CAM_PASS" in str(err)
    assert err.file == "x.yaml"
    assert err.field == "cameras.0.url"


def test_default_placeholder_is_used() -> None:
    cfg = parse_config("mqtt:\n  url: ${NOPE:-mqtt://localhost:1883}\n", env={})
    assert cfg.mqtt.url == "mqtt://localhost:1883"


def test_env_overrides_win_over_the_file(tmp_path: Path) -> None:
    env = {
        "CAM_PASS": "x",
        "HUB_STATE_DIR": str(tmp_path / "s"),
        "HUB_HTTP_PORT": "18080",
        "HUB_DATABASE_URL": "postgresql://127.0.0.1:5432/test",
        "HUB_MQTT_URL": "mqtt://127.0.0.1:1883",
    }
    cfg = parse_config(GOOD, env=env)
    assert cfg.hub.state_dir == tmp_path / "s"
    assert cfg.http.port == 18080
    assert cfg.database.url == "postgresql://127.0.0.1:5432/test"
    assert cfg.mqtt.url == "mqtt://127.0.0.1:1883"


def test_unknown_key_reports_line_and_suggests_the_fix() -> None:
    text = GOOD.replace("    grid:", "    gird:")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bad.yaml", env={"CAM_PASS": "x"})
    err = info.value
    assert err.line == 6
    assert err.field == "cameras.0.gird"
    assert err.hint is not None and "grid" in err.hint
    assert str(err).startswith("bad.yaml:6: cameras.0.gird:")


def test_wrong_type_reports_the_line_of_the_value() -> None:
    text = "detect:\n  fps: fast\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml", env={})
    assert info.value.line == 2
    assert info.value.field == "detect.fps"


def test_backend_discriminator_errors_are_readable() -> None:
    text = "detect:\n  backend:\n    type: yolo9000\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    assert info.value.line == 3 or info.value.line == 2
    assert info.value.hint is not None and "opencv-dnn" in info.value.hint


def test_bad_yaml_reports_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("hub:\n  name: [unclosed\n", "y.yaml", env={})
    assert info.value.line is not None
    assert "YAML" in str(info.value)


def test_polygon_outside_unit_square_is_rejected() -> None:
    text = GOOD.replace("[0.5, 0.9]", "[640, 360]")
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={"CAM_PASS": "x"})
    assert "fractions" in str(info.value)
    assert info.value.line == 9


def test_device_linking_unknown_camera_is_rejected() -> None:
    text = GOOD.replace("cameras: [cam1]", "cameras: [cam9]")
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={"CAM_PASS": "x"})
    assert "cam9" in str(info.value)


@pytest.mark.parametrize("name", ["demo.yaml", "example.production.yaml", "docker.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    env = {"CAMERA_PASSWORD": "x", "SHOP3_PASSWORD": "x", "TW_0102_PASSWORD": "x", "MQTT_PASSWORD": "x",
           "XINHE_MQTT_PASSWORD": "x", "WECOM_KEY": "x",
           "DB_PASSWORD": "x", "HUB_STATE_DIR": "/tmp/x"}
    cfg = load_config(ROOT / "config" / name, env=env)
    assert cfg.hub.name


def test_cli_config_check_ok_and_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(ROOT / "config" / "demo.yaml")]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("detect:\n  fsp: 5\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: detect.fsp:" in err
    assert "did you mean 'fps'" in err


def test_hub_help_runs_as_a_program() -> None:
    out = subprocess.run([sys.executable, "-m", "hub.cli", "--help"], capture_output=True, text=True,
                         check=True)
    assert "run" in out.stdout and "config" in out.stdout and "HUB_STATE_DIR" in out.stdout


def _field_names(model: type, seen: set[type] | None = None) -> set[str]:
    from pydantic import BaseModel

    from hub.config_loader import _unwrap_model

    seen = seen or set()
    names: set[str] = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        names.add(field.alias or name)
        args = [field.annotation, *getattr(field.annotation, "__args__", ())]
        for arg in args:
            for sub in [arg, *getattr(arg, "__args__", ())]:
                inner = _unwrap_model(sub)
                if inner is not None and issubclass(inner, BaseModel) and inner not in seen:
                    seen.add(inner)
                    names |= _field_names(inner, seen)
    return names


def test_production_example_documents_every_option() -> None:
    from hub import config as c

    text = (ROOT / "config" / "example.production.yaml").read_text()
    from adapters.mqtt import MqttSourceConfig
    from adapters.onvif import OnvifCameraConfig

    models = [c.HubConfig, c.OpenCvDnnBackend, c.UltralyticsBackend, c.OnnxRuntimeBackend, c.ZoneConfig,
              c.CameraConfig, c.SnapshotCameraConfig, OnvifCameraConfig, MqttSourceConfig, c.DeviceConfig,
              c.NightHours]
    missing = sorted({n for m in models for n in _field_names(m) if f"{n}:" not in text})
    assert not missing, f"config/example.production.yaml does not document: {missing}"


def test_a_misspelt_required_key_is_named_with_its_line() -> None:
    from hub.config_loader import parse_config

    with pytest.raises(ConfigError) as err:
        parse_config("cameras:\n  - id: g\n    kind: onvif\n    hots: 10.0.0.1\n", "hub.yaml")
    assert str(err.value) == "hub.yaml:4: cameras.0.hots: unknown key 'hots' (hint: did you mean 'host'?)"


def test_an_unset_environment_variable_names_its_line() -> None:
    from hub.config_loader import parse_config

    text = "cameras:\n  - id: g\n    url: rtsp://x/y\n    password: ${NOPE_PW}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "hub.yaml", env={})
    assert err.value.line == 4
    assert err.value.field == "cameras.0.password"


def test_devices_inside_sources_link_known_cameras_and_have_unique_ids() -> None:
    from hub.config_loader import parse_config

    base = ("cameras:\n  - id: c1\n    url: rtsp://x/y\nsources:\n  - kind: mqtt\n    id: s\n    devices:\n"
            "      - id: {dev}\n        topic: t/d1\n        cameras: [{cam}]\n")
    assert parse_config(base.format(dev="d1", cam="c1"), "h.yaml").sources[0].id == "s"
    with pytest.raises(ConfigError, match=r"device 'd1' links unknown cameras \['nope'\]"):
        parse_config(base.format(dev="d1", cam="nope"), "h.yaml")
    with pytest.raises(ConfigError, match="device id 'c1' is already used"):
        parse_config(base.format(dev="c1", cam="c1"), "h.yaml")
