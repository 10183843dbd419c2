"""Silences (maintenance windows): alerts from a silenced grid (and the grids below it) or source are
stored but open no incident. They come from the config (``silences:``) and from the ``silences`` table
(operators add them at run time); every silence has an end, so none is forgotten for ever."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from alerts.grids import GridTree
from alerts.settings import SilenceConfig
from hub.storage import Database
from hub.storage import dispatch as sql


def config_rows(silences: Iterable[SilenceConfig]) -> list[dict[str, Any]]:
    out = []
    for i, s in enumerate(silences):
        starts = s.starts.timestamp() if s.starts is not None else float("-inf")
        out.append({"id": f"config:{i}", "grid": s.grid, "source": s.source, "kinds": list(s.kinds),
                    "starts": starts, "ends": s.ends.timestamp(), "reason": s.reason})
    return out


class Silences:
    def __init__(self, configured: Iterable[SilenceConfig], tree: GridTree, db: Database | None = None, *,
                 refresh_s: float = 10.0) -> None:
        self.configured = config_rows(configured)
        self.tree = tree
        self.db = db
        self.refresh_s = refresh_s
        self._stored: list[dict[str, Any]] = []
        self._loaded_at = float("-inf")

    def invalidate(self) -> None:
        """A silence was added or removed: read the table on the next check."""
        self._loaded_at = float("-inf")

    async def _rows(self) -> list[dict[str, Any]]:
        if self.db is not None and time.monotonic() - self._loaded_at > self.refresh_s:
            async with self.db.pool.connection() as conn:
                rows = await sql.active_silences(conn, datetime.now(UTC))
            self._stored = [{"id": r["id"], "grid": r["grid"], "source": r["source"], "kinds": r["kinds"],
                             "starts": datetime.fromisoformat(r["starts_at"]).timestamp(),
                             "ends": datetime.fromisoformat(r["ends_at"]).timestamp(), "reason": r["reason"]}
                            for r in rows]
            self._loaded_at = time.monotonic()
        return self.configured + self._stored

    async def match(self, *, grid: str | None, source: str, kind: str, at: float) -> dict[str, Any] | None:
        """The silence covering an alert of ``kind`` from ``source`` in ``grid`` at ``at``, if any."""
        for s in await self._rows():
            if not s["starts"] <= at < s["ends"] or (s["kinds"] and kind not in s["kinds"]):
                continue
            if s["source"] is not None and s["source"] == source:
                return s
            below = s["grid"] in self.tree.grids and grid in self.tree.subtree(s["grid"])
            if s["grid"] is not None and grid is not None and (grid == s["grid"] or below):
                return s
        return None
