"""The Docker files a user would run: compose validates, the Dockerfile copies what exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose_command() -> list[str]:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail(
        "neither `docker compose` nor `docker-compose` is installed (scripts/system-deps.sh installs "
        "Debian's docker-compose)"
    )


def test_compose_config_validates() -> None:
    out = subprocess.run(
        [*_compose_command(), "-f", str(ROOT / "docker" / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    rendered = yaml.safe_load(out.stdout)
    assert set(rendered["services"]) == {"hub", "timescaledb", "mosquitto"}
    env = rendered["services"]["hub"]["environment"]
    assert env["HUB_DATABASE_URL"].startswith("postgresql://hub:")
    assert env["HUB_MQTT_URL"] == "mqtt://mosquitto:1883"


def test_dockerfile_copies_existing_paths_and_runs_a_valid_config() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    copies = re.findall(r"^COPY\s+(.+)$", text, re.MULTILINE)
    assert copies
    for line in copies:
        for part in line.split()[:-1]:  # the last word is the destination
            assert (ROOT / part).exists(), f"Dockerfile copies missing {part}"
    assert "config/docker.yaml" in text
    from hub.config_loader import load_config

    load_config(ROOT / "config" / "docker.yaml", env={})
