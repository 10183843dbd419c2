"""Silences at run time (``/api/silences``): what is listed, who may add or lift which.

The list holds the silences that are not over yet — active ones and those that start later —
from the config (ids ``config:<n>``, read-only) and from the ``silences`` table (integer ids). Operators
and admins may add and lift any stored silence; a grid leader only those whose grid (or whose source's
grid) lies in the grids they lead or below. Every change calls :meth:`Silences.invalidate` on the
instance the alert engine matches with, so the next alert already sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from alerts.people import Caller, Directory
from alerts.reports import UnknownGrid
from alerts.silences import Silences
from hub.errors import Forbidden
from hub.storage import dispatch as sql

log = logging.getLogger(__name__)

#: May add and lift any silence.
SILENCERS = frozenset({"operator", "admin"})
#: May add and lift silences within the grids they serve.
SCOPED_SILENCERS = frozenset({"grid_leader"})


def _iso(epoch: float) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch != float("-inf") else None


class SilenceAdmin:
    def __init__(self, silences: Silences, directory: Directory, source_grids: Mapping[str, str]) -> None:
        if silences.db is None:
            raise ValueError("run-time silences need the database")
        self.silences = silences
        self.db = silences.db
        self.directory = directory
        self.source_grids = dict(source_grids)  # camera or device id -> grid code

    def grid_of(self, silence: Mapping[str, Any]) -> str | None:
        grid = silence.get("grid")
        return str(grid) if grid else self.source_grids.get(str(silence.get("source")))

    def visible(self, caller: Caller, silence: Mapping[str, Any]) -> bool:
        return self.directory.in_scope(caller.grids, self.grid_of(silence))

    def check(self, caller: Caller, silence: Mapping[str, Any]) -> None:
        """Raise :class:`Forbidden` unless ``caller`` may add or lift ``silence``."""
        if caller.roles & SILENCERS:
            return
        if not caller.roles & SCOPED_SILENCERS:
            raise Forbidden(f"{caller.id}: role {sorted(caller.roles)} may not change silences (roles that "
                            f"may: {', '.join(sorted(SILENCERS | SCOPED_SILENCERS))})")
        if not self.directory.in_scope(caller.grids, self.grid_of(silence)):
            what = f"grid {silence['grid']}" if silence.get("grid") else f"source {silence.get('source')}"
            raise Forbidden(f"{caller.id}: {what} is outside the grids you lead "
                            f"({', '.join(caller.grids) or '-'})")

    async def current(self, caller: Caller, now: datetime) -> list[dict[str, Any]]:
        """Silences not over at ``now`` that the caller's grids cover, config ones first."""
        out = [{"id": s["id"], "grid": s["grid"], "source": s["source"], "kinds": list(s["kinds"]),
                "starts_at": _iso(s["starts"]), "ends_at": _iso(s["ends"]), "reason": s["reason"],
                "created_by": "config", "active": s["starts"] <= now.timestamp()}
               for s in self.silences.configured if s["ends"] > now.timestamp()]
        async with self.db.pool.connection() as conn:
            stored = await sql.current_silences(conn, now)
        out += [{**s, "active": datetime.fromisoformat(s["starts_at"]) <= now} for s in stored]
        return [s for s in out if self.visible(caller, s)]

    async def add(self, caller: Caller, *, grid: str | None, source: str | None, kinds: Sequence[str],
                  starts: datetime | None, ends: datetime, reason: str) -> dict[str, Any]:
        known = self.directory.tree.grids
        if grid is not None and known and grid not in known:
            raise UnknownGrid(grid, sorted(known))
        self.check(caller, {"grid": grid, "source": source})
        async with self.db.pool.connection() as conn:
            row = await sql.add_silence(conn, grid=grid, source=source, kinds=kinds, starts=starts, ends=ends,
                                        reason=reason, created_by=caller.id)
        self.silences.invalidate()
        log.info("silence %s added by %s: %s until %s", row["id"], caller.id, grid or source, row["ends_at"])
        return {**row, "active": datetime.fromisoformat(row["starts_at"]) <= datetime.now(UTC)}

    async def delete(self, caller: Caller, silence_id: int) -> bool:
        """Lift a stored silence; False if there is none with that id."""
        async with self.db.pool.connection() as conn, conn.transaction():
            row = await sql.get_silence(conn, silence_id)
            if row is None:
                return False
            self.check(caller, row)
            deleted = await sql.delete_silence(conn, silence_id)
        self.silences.invalidate()
        if deleted:
            log.info("silence %s lifted by %s", silence_id, caller.id)
        return deleted
