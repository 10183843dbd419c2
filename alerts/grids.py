"""The grid hierarchy (区 > 街道 > 社区 > 网格 > 微网格): structure checks and where things belong.

:class:`GridTree` is built from ``grids:`` in the config. :meth:`GridTree.problems` is what
``hub grids check`` reports: grids without a parent that are not districts (orphans), a child at the
same or a higher level than its parent, a child polygon reaching outside its parent's, and siblings
whose areas overlap when neither lists the other in ``overlaps``. :meth:`GridTree.assignments` says which
grid every camera, camera zone and device belongs to: the one written in the config, or else the deepest
grid whose polygon contains its ``location`` (point in polygon).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from alerts.geo import contains, interiors_overlap, within
from hub.config import GRID_LEVELS, GridConfig, HubConfig

How = Literal["explicit", "location", "camera", "unassigned"]


@dataclass(frozen=True, slots=True)
class Assignment:
    what: str  # "camera", "zone", "device"
    id: str
    grid: str | None
    how: How  # explicit in the config, found by location, inherited from its camera, or none


class GridTree:
    def __init__(self, grids: list[GridConfig]) -> None:
        self.grids = {g.code: g for g in grids}
        self.children: dict[str | None, list[GridConfig]] = {}
        for g in grids:
            self.children.setdefault(g.parent, []).append(g)

    def depth(self, code: str) -> int:
        return GRID_LEVELS.index(self.grids[code].level)

    def ancestors(self, code: str) -> Iterator[GridConfig]:
        parent = self.grids[code].parent
        while parent is not None and parent in self.grids:
            yield self.grids[parent]
            parent = self.grids[parent].parent

    def subtree(self, code: str) -> set[str]:
        """``code`` and every grid below it."""
        out, todo = set(), [code]
        while todo:
            current = todo.pop()
            out.add(current)
            todo.extend(c.code for c in self.children.get(current, []))
        return out

    def locate(self, point: tuple[float, float]) -> str | None:
        """The deepest grid whose polygon contains ``point`` (None: no polygon does)."""
        best: GridConfig | None = None
        for g in self.grids.values():
            if g.polygon and contains(g.polygon, point) and (best is None or self.depth(g.code) >
                                                               self.depth(best.code)):
                best = g
        return best.code if best else None

    # -- checks ----------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        out: list[str] = []
        for g in self.grids.values():
            if g.parent is None and g.level != "district":
                out.append(f"grid {g.code} ({g.level}) has no parent: only districts may be roots")
            if g.parent is not None and g.parent in self.grids and self.depth(g.code) <= self.depth(g.parent):
                out.append(f"grid {g.code} ({g.level}) cannot be inside {g.parent} "
                           f"({self.grids[g.parent].level}): levels go {' > '.join(GRID_LEVELS)}")
            outer = next((a for a in self.ancestors(g.code) if a.polygon), None)
            if g.polygon and outer is not None and outer.polygon and not within(g.polygon, outer.polygon):
                out.append(f"grid {g.code}'s polygon reaches outside {outer.code}'s")
        for siblings in self.children.values():
            for i, a in enumerate(siblings):
                for b in siblings[i + 1:]:
                    allowed = b.code in a.overlaps or a.code in b.overlaps
                    if a.polygon and b.polygon and not allowed and interiors_overlap(a.polygon, b.polygon):
                        out.append(f"grids {a.code} and {b.code} overlap (list one in the other's "
                                   f"overlaps: if that is intended)")
        return out

    def assignments(self, cfg: HubConfig) -> list[Assignment]:
        out: list[Assignment] = []

        def place(what: str, id_: str, grid: str, location: tuple[float, float] | None,
                  fallback: str | None = None) -> Assignment:
            if grid:
                a = Assignment(what, id_, grid, "explicit")
            elif location is not None and (found := self.locate(location)) is not None:
                a = Assignment(what, id_, found, "location")
            elif fallback:
                a = Assignment(what, id_, fallback, "camera")
            else:
                a = Assignment(what, id_, None, "unassigned")
            out.append(a)
            return a

        for cam in cfg.cameras:
            placed = place("camera", cam.id, cam.grid, cam.location)
            for zone in cam.zones:
                place("zone", f"{cam.id}/{zone.id}", zone.grid, None, placed.grid)
        for dev in cfg.devices:
            place("device", dev.id, dev.grid, dev.location)
        return out

    def grid_map(self, cfg: HubConfig) -> dict[str, str]:
        """``"camera:<id>"``, ``"zone:<camera>/<zone>"``, ``"device:<id>"`` -> grid code, for the alert
        engine (only placed items)."""
        return {f"{a.what}:{a.id}": a.grid for a in self.assignments(cfg) if a.grid}

    def render(self) -> str:
        """The tree as indented text."""
        lines: list[str] = []

        def walk(parent: str | None, indent: int) -> None:
            for g in sorted(self.children.get(parent, []), key=lambda x: x.code):
                shape = f", {len(g.polygon)}-point polygon" if g.polygon else ""
                lines.append(f"{'  ' * indent}{g.code} {g.name} ({g.level}{shape})")
                walk(g.code, indent + 1)

        walk(None, 0)
        orphans = [g for g in self.grids.values() if g.parent is not None and g.parent not in self.grids]
        lines += [f"{g.code} {g.name} ({g.level}, parent {g.parent} missing)" for g in orphans]
        return "\n".join(lines)
