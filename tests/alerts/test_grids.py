"""The grid hierarchy: structure problems, point-in-polygon placement, `hub grids check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alerts.grids import GridTree
from hub.config import GridConfig
from hub.config_loader import load_config, parse_config
from hub.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TREE = """
grids:
  - {code: "4401", name: 区, level: district}
  - {code: "440101", name: 街道, level: street, parent: "4401",
     polygon: [[0, 0], [4, 0], [4, 2], [0, 2]]}
  - {code: "44010101", name: 一网格, level: grid, parent: "440101", polygon: [[0, 0], [2, 0], [2, 2], [0, 2]]}
  - {code: "44010102", name: 二网格, level: grid, parent: "440101", polygon: [[2, 0], [4, 0], [4, 2], [2, 2]]}
  - {code: "4401010101", name: 微网格, level: micro_grid, parent: "44010101",
     polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}
"""


def tree(extra: str = "") -> GridTree:
    return GridTree(parse_config(TREE + extra, "g.yaml").grids)


def test_a_clean_tree_has_no_problems_and_locates_the_deepest_grid() -> None:
    t = tree()
    assert t.problems() == []
    assert t.locate((0.5, 0.5)) == "4401010101"
    assert t.locate((1.5, 0.5)) == "44010101"
    assert t.locate((3.0, 1.0)) == "44010102"
    assert t.locate((9.0, 9.0)) is None
    assert t.subtree("44010101") == {"44010101", "4401010101"}


def test_orphans_levels_overlaps_and_escaping_polygons_are_reported() -> None:
    grids = [
        GridConfig(code="A", level="district"),
        GridConfig(code="S", level="street", parent="A", polygon=[(0, 0), (4, 0), (4, 2), (0, 2)]),
        GridConfig(code="G1", level="grid", parent="S", polygon=[(0, 0), (3, 0), (3, 2), (0, 2)]),
        GridConfig(code="G2", level="grid", parent="S", polygon=[(2, 0), (4, 0), (4, 2), (2, 2)]),
        GridConfig(code="G3", level="grid", parent="S", polygon=[(4, 0), (5, 0), (5, 2), (4, 2)]),
        GridConfig(code="C", level="community", parent="G1"),
        GridConfig(code="Lost", level="grid"),
    ]
    problems = GridTree(grids).problems()
    assert "grid Lost (grid) has no parent: only districts may be roots" in problems
    assert any("grid C (community) cannot be inside G1 (grid)" in p for p in problems)
    assert any("grids G1 and G2 overlap" in p for p in problems)
    assert any("G3's polygon reaches outside S's" in p for p in problems)
    assert not any("G2 and G3" in p for p in problems)  # they share an edge only
    allowed = [g.model_copy(update={"overlaps": ["G2"]}) if g.code == "G1" else g for g in grids]
    assert not any("G1 and G2" in p for p in GridTree(allowed).problems())


def test_unknown_grid_references_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="names unknown grid 'nope'"):
        parse_config(TREE + '  - {code: X, level: grid, parent: "nope"}\n', "g.yaml")
    with pytest.raises(ConfigError, match=r"camera 'c1' is in unknown grid '999'"):
        parse_config(TREE + "cameras:\n  - {id: c1, url: 'rtsp://h/1', grid: '999'}\n", "g.yaml")
    with pytest.raises(ConfigError, match="serves unknown grids"):
        parse_config(TREE + "people:\n  - {id: p, roles: [patrol], grids: ['999']}\n", "g.yaml")
    with pytest.raises(ConfigError, match="needs url"):
        parse_config(TREE + "people:\n  - {id: p, roles: [patrol], channels: [{type: webhook}]}\n", "g.yaml")


def test_cameras_zones_and_devices_are_placed_explicitly_or_by_location() -> None:
    cfg = parse_config(TREE + """
cameras:
  - id: c-explicit
    url: rtsp://h/1
    grid: "44010102"
    zones:
      - {id: z1, polygon: [[0, 0], [1, 0], [1, 1]]}
      - {id: z2, grid: "4401010101", polygon: [[0, 0], [1, 0], [1, 1]]}
  - {id: c-located, url: "rtsp://h/2", location: [0.5, 0.5]}
  - {id: c-nowhere, url: "rtsp://h/3", location: [9, 9]}
devices:
  - {id: d1, kind: door_contact, topic: t/d1, location: [3.5, 1.0]}
""", "g.yaml")
    placed = {(a.what, a.id): (a.grid, a.how) for a in GridTree(cfg.grids).assignments(cfg)}
    assert placed[("camera", "c-explicit")] == ("44010102", "explicit")
    assert placed[("zone", "c-explicit/z1")] == ("44010102", "camera")
    assert placed[("zone", "c-explicit/z2")] == ("4401010101", "explicit")
    assert placed[("camera", "c-located")] == ("4401010101", "location")
    assert placed[("camera", "c-nowhere")] == (None, "unassigned")
    assert placed[("device", "d1")] == ("44010102", "location")


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", "grids", "check", "-c", str(path)],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=60)


def test_grids_check_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(TREE + "cameras:\n  - {id: c1, url: 'rtsp://h/1', location: [3, 1]}\n")
    result = run_check(good)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  440101 街道 (street, 4-point polygon)" in result.stdout
    assert "c1" in result.stdout
    assert "44010102 (location)" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(TREE + "cameras:\n  - {id: c2, url: 'rtsp://h/2', location: [9, 9]}\n")
    result = run_check(bad)
    assert result.returncode == 1
    assert "problem: camera c2 belongs to no grid" in result.stdout


def test_the_production_example_tree_is_clean() -> None:
    env = {"CAMERA_PASSWORD": "x", "SHOP3_PASSWORD": "x", "TW_0102_PASSWORD": "x", "MQTT_PASSWORD": "x",
           "XINHE_MQTT_PASSWORD": "x", "WECOM_KEY": "x", "DB_PASSWORD": "x"}
    cfg = load_config(ROOT / "config" / "example.production.yaml", env=env)
    t = GridTree(cfg.grids)
    assert t.problems() == []
    assert all(a.grid for a in t.assignments(cfg))
