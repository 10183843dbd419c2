"""``hub db status | upgrade | maintain`` as a user runs them, on a fresh schema of the real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import pg

pg_url = pg.pg_url


def hub_db(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", "db", command, "-c", str(config)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_status_upgrade_maintain(pg_url: str, tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(f'hub: {{state_dir: "{tmp_path / "state"}"}}\n'
                      f'database: {{url: "{pg_url}", timescaledb: "off", retention_days: {{events: 30}}}}\n')
    before = hub_db("status", config)
    assert before.returncode == 1, before.stderr
    assert "3 pending 001_initial 002_dispatch 003_timeseries" in before.stdout
    assert "hub db upgrade" in before.stdout

    up = hub_db("upgrade", config)
    assert up.returncode == 0, up.stderr
    assert "layout: partitioned" in up.stdout

    done = hub_db("maintain", config)
    assert done.returncode == 0, done.stderr
    assert "rollups refreshed: events_hourly, health_hourly" in done.stdout

    after = hub_db("status", config)
    assert after.returncode == 0, after.stderr
    lines = after.stdout.splitlines()
    assert lines[0] == "migrations: 3 applied, 0 pending"
    assert lines[1] == "layout: partitioned"
    tables = {line.split()[0]: line.split() for line in lines[3:]}
    assert set(tables) == {"events", "rule_hits", "health_samples", "track_segments"}
    assert all(int(cols[-3]) >= 4 for cols in tables.values())  # today + 3 days ahead


def test_bad_retention_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text('database: {url: "postgresql://127.0.0.1/x", retention_days: {evnts: 3}}\n')
    got = hub_db("status", config)
    assert got.returncode == 2
    assert "no time-series table ['evnts']" in got.stderr
