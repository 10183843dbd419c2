"""Incident rows: create, update, history, list/get and operator actions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from hub.errors import IncidentNotFound
from hub.storage import transitions
from hub.storage.rows import INCIDENT_COLUMNS, history_dict, incident_dict, ts

Pool = AsyncConnectionPool[psycopg.AsyncConnection[Any]]
Conn = psycopg.AsyncConnection[Any]

_SELECT: LiteralString = "SELECT " + INCIDENT_COLUMNS + " FROM incidents"

_UPDATABLE = ("class", "state", "grid", "title", "kind", "sources", "evidence", "count", "last_seen")


async def add_history(conn: Conn, incident_id: str, state: str, *, actor: str = "system", note: str = "",
                      action: str | None = None, at: float | datetime | None = None) -> None:
    await conn.execute(
        "INSERT INTO incident_history (incident_id, state, action, actor, at, note) "
        "VALUES (%s, %s, %s, %s, COALESCE(%s, now()), %s)",
        (incident_id, state, action, actor, ts(at) if at is not None else None, note),
    )


async def create(pool: Pool, *, id: str, kind: str, cls: str = "general", grid: str | None = None,
                 title: str = "", opened_at: float | datetime | None = None,
                 sources: Sequence[dict[str, Any]] = (), evidence: Sequence[dict[str, Any]] = (),
                 count: int = 1, last_seen: float | datetime | None = None, actor: str = "system",
                 note: str = "") -> dict[str, Any]:
    """Insert an incident in state ``received`` and its first history row, in one transaction."""
    opened = ts(opened_at) if opened_at is not None else None
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "INSERT INTO incidents (id, class, state, grid, title, kind, opened_at, updated_at, sources, "
            "evidence, count, last_seen) VALUES (%(id)s, %(cls)s, 'received', %(grid)s, %(title)s, %(kind)s, "
            "COALESCE(%(opened)s, now()), now(), %(sources)s, %(evidence)s, %(count)s, "
            "COALESCE(%(last_seen)s, %(opened)s, now())) RETURNING " + INCIDENT_COLUMNS,
            {"id": id, "cls": cls, "grid": grid, "title": title, "kind": kind, "opened": opened,
             "sources": Jsonb(list(sources)), "evidence": Jsonb(list(evidence)), "count": count,
             "last_seen": ts(last_seen) if last_seen is not None else None},
        )
        row = await cur.fetchone()
        assert row is not None
        await add_history(conn, id, "received", actor=actor, note=note or title, action="open")
    return incident_dict(row)


async def update(pool: Pool, incident_id: str, **fields: Any) -> dict[str, Any]:
    """Set some of ``cls`` (the ``class`` column), ``state, grid, title, sources, evidence, count,
    last_seen``."""
    if "cls" in fields:
        fields["class"] = fields.pop("cls")
    unknown = set(fields) - set(_UPDATABLE)
    if unknown:
        raise ValueError(f"cannot update incident fields {sorted(unknown)}; allowed: {_UPDATABLE}")
    values: dict[str, Any] = {"id": incident_id}
    sets: list[LiteralString] = []
    for name in _UPDATABLE:  # iterate the literal names, never caller strings, to build SQL
        if name in fields:
            value = fields[name]
            if name in ("sources", "evidence"):
                value = Jsonb(list(value))
            elif name == "last_seen":
                value = ts(value)
            values[name] = value
            sets.append(_SET[name])
    sql: LiteralString = "UPDATE incidents SET updated_at = now()"
    for part in sets:
        sql += ", " + part
    sql += " WHERE id = %(id)s RETURNING " + INCIDENT_COLUMNS
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql, values)
        row = await cur.fetchone()
    if row is None:
        raise IncidentNotFound(incident_id)
    return incident_dict(row)


_SET: dict[str, LiteralString] = {
    "class": "class = %(class)s", "state": "state = %(state)s", "grid": "grid = %(grid)s",
    "title": "title = %(title)s", "kind": "kind = %(kind)s", "sources": "sources = %(sources)s",
    "evidence": "evidence = %(evidence)s",
    "count": "count = %(count)s", "last_seen": "last_seen = %(last_seen)s",
}


async def list_(pool: Pool, *, state: str | None = None, grid: str | None = None, cls: str | None = None,
                since: float | datetime | str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first. ``since`` filters on ``updated_at`` (new and changed incidents)."""
    sql: LiteralString = _SELECT + " WHERE TRUE"
    params: list[Any] = []
    if state is not None:
        sql += " AND state = %s"
        params.append(state)
    if grid is not None:
        sql += " AND grid = %s"
        params.append(grid)
    if cls is not None:
        sql += " AND class = %s"
        params.append(cls)
    if since is not None:
        sql += " AND updated_at >= %s"
        params.append(ts(since))
    sql += " ORDER BY opened_at DESC, id DESC LIMIT %s"
    params.append(max(1, min(int(limit), 1000)))
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql, params)
        return [incident_dict(r) for r in await cur.fetchall()]


async def _history(conn: Conn, incident_id: str) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT state, action, actor, at, note FROM incident_history WHERE incident_id = %s "
                      "ORDER BY at, id", (incident_id,))
    return [history_dict(r) for r in await cur.fetchall()]


async def get(pool: Pool, incident_id: str) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_SELECT + " WHERE id = %s", (incident_id,))
        row = await cur.fetchone()
        if row is None:
            return None
        out = incident_dict(row)
        out["history"] = await _history(conn, incident_id)
    return out


async def action(pool: Pool, incident_id: str, action: str, note: str = "",
                 actor: str = "operator") -> dict[str, Any]:
    """Apply an operator action (see :mod:`hub.storage.transitions`); returns the incident with history."""
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT state FROM incidents WHERE id = %s FOR UPDATE", (incident_id,))
        row = await cur.fetchone()
        if row is None:
            raise IncidentNotFound(incident_id)
        new_state = transitions.next_state(incident_id, row["state"], action)
        await conn.execute("UPDATE incidents SET state = %s, updated_at = now() WHERE id = %s",
                           (new_state, incident_id))
        await add_history(conn, incident_id, new_state, actor=actor, note=note, action=action)
    got = await get(pool, incident_id)
    assert got is not None
    return got
