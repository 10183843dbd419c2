"""Incident rows: create, update, history, list/get and operator actions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from hub.errors import IncidentNotFound
from hub.storage.rows import HISTORY_COLUMNS, INCIDENT_COLUMNS, history_dict, incident_dict, ts

Pool = AsyncConnectionPool[psycopg.AsyncConnection[Any]]
Conn = psycopg.AsyncConnection[Any]

_SELECT: LiteralString = "SELECT " + INCIDENT_COLUMNS + " FROM incidents"

_UPDATABLE = ("class", "state", "grid", "title", "kind", "sources", "evidence", "count", "last_seen",
              "department", "dedup_keys")


async def add_history(conn: Conn, incident_id: str, state: str, *, actor: str = "system", note: str = "",
                      action: str | None = None, at: float | datetime | None = None) -> None:
    await conn.execute(
        "INSERT INTO incident_history (incident_id, state, action, actor, at, note) "
        "VALUES (%s, %s, %s, %s, COALESCE(%s, now()), %s)",
        (incident_id, state, action, actor, ts(at) if at is not None else None, note),
    )


async def insert(conn: Conn, *, id: str, kind: str, cls: str = "general", grid: str | None = None,
                 title: str = "", opened_at: float | datetime | None = None,
                 sources: Sequence[dict[str, Any]] = (), evidence: Sequence[dict[str, Any]] = (),
                 count: int = 1, last_seen: float | datetime | None = None, actor: str = "system",
                 note: str = "", department: str = "", dedup_keys: Sequence[Sequence[Any]] = (),
                 idem_key: str | None = None) -> dict[str, Any] | None:
    """Insert an incident in state ``received`` with its first history row (inside the caller's
    transaction); returns the raw row. With ``idem_key``, a second insert with the same key returns None."""
    opened = ts(opened_at) if opened_at is not None else None
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "INSERT INTO incidents (id, class, state, grid, title, kind, opened_at, updated_at, sources, "
        "evidence, count, last_seen, department, dedup_keys, idem_key) VALUES (%(id)s, %(cls)s, 'received', "
        "%(grid)s, %(title)s, %(kind)s, COALESCE(%(opened)s, now()), COALESCE(%(opened)s, now()), "
        "%(sources)s, "
        "%(evidence)s, %(count)s, COALESCE(%(last_seen)s, %(opened)s, now()), %(department)s, %(keys)s, "
        "%(idem)s) ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL DO NOTHING "
        "RETURNING " + INCIDENT_COLUMNS,
        {"id": id, "cls": cls, "grid": grid, "title": title, "kind": kind, "opened": opened,
         "sources": Jsonb(list(sources)), "evidence": Jsonb(list(evidence)), "count": count,
         "last_seen": ts(last_seen) if last_seen is not None else None, "department": department,
         "keys": Jsonb([list(k) for k in dedup_keys]), "idem": idem_key},
    )
    row = await cur.fetchone()
    if row is None:
        return None
    await conn.execute(
        "INSERT INTO incident_history (incident_id, state, action, actor, at, note) "
        "VALUES (%s, 'received', 'open', %s, %s, %s)",
        (id, actor, row["opened_at"], note or title))
    return row


async def create(pool: Pool, **fields: Any) -> dict[str, Any]:
    """:func:`insert` in its own transaction."""
    async with pool.connection() as conn, conn.transaction():
        row = await insert(conn, **fields)
    if row is None:
        raise ValueError(f"an incident with idem_key {fields.get('idem_key')!r} exists")
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
            elif name == "dedup_keys":
                value = Jsonb([list(k) for k in value])
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
    "department": "department = %(department)s", "dedup_keys": "dedup_keys = %(dedup_keys)s",
}


@dataclass(frozen=True, slots=True)
class Scope:
    """What a caller may see: incidents in ``grids`` (every code, subtrees expanded; None = every grid)
    or of ``department``; a department-only member sees only their department's, in their grids."""

    grids: Sequence[str] | None
    department: str | None = None
    department_only: bool = False


async def list_(pool: Pool, *, state: str | None = None, grid: str | Sequence[str] | None = None,
                cls: str | None = None, since: float | datetime | str | None = None, limit: int = 100,
                scope: Scope | None = None) -> list[dict[str, Any]]:
    """Newest first. ``since`` filters on ``updated_at`` (new and changed incidents). ``grid`` is one
    code or several (a subtree); ``scope`` limits the rows to what a caller may see, before ``limit``."""
    sql: LiteralString = _SELECT + " WHERE TRUE"
    params: list[Any] = []
    if state is not None:
        sql += " AND state = %s"
        params.append(state)
    if grid is not None:
        sql += " AND grid = ANY(%s)"
        params.append([grid] if isinstance(grid, str) else list(grid))
    if scope is not None and scope.department_only:
        sql += " AND department = %s"
        params.append(scope.department or "")
    if scope is not None and scope.department_only and scope.grids is not None:
        sql += " AND grid = ANY(%s)"
        params.append(list(scope.grids))
    elif scope is not None and scope.grids is not None:
        sql += " AND (grid = ANY(%s) OR (%s::text IS NOT NULL AND department = %s))"
        params += [list(scope.grids), scope.department, scope.department]
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
    await cur.execute("SELECT " + HISTORY_COLUMNS + " FROM incident_history WHERE incident_id = %s "
                      "ORDER BY id", (incident_id,))
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


async def get_by_idem_key(pool: Pool, idem_key: str) -> dict[str, Any] | None:
    """The incident opened with ``idem_key`` (with history), or None."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM incidents WHERE idem_key = %s", (idem_key,))
        row = await cur.fetchone()
    return await get(pool, str(row[0])) if row is not None else None


async def lock(conn: Conn, incident_id: str) -> dict[str, Any]:
    """The raw incident row (datetimes, ``class``), locked for this transaction (``FOR UPDATE``)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + " WHERE id = %s FOR UPDATE", (incident_id,))
    row = await cur.fetchone()
    if row is None:
        raise IncidentNotFound(incident_id)
    return row


#: Columns a lifecycle step may set (names are literals: never built from caller strings).
_STEP_COLUMNS: dict[str, LiteralString] = {
    name: name for name in ("level", "overdue", "dispatched_at", "accepted_at", "arrived_at", "resolved_at",
                            "closed_at", "supervised_at", "assignee", "satisfaction", "false_alarm_reason",
                            "accept_due", "resolve_due")
}


async def record(conn: Conn, incident_id: str, *, action: str, from_state: str, state: str, level: int,
                 at: datetime, actor: str = "system", note: str = "", set_now: Sequence[str] = (),
                 set_values: dict[str, Any] | None = None,
                 attachments: Sequence[dict[str, Any]] = ()) -> int:
    """Apply one transition to a locked incident and store it in the history; returns the history id."""
    unknown = (set(set_now) | set(set_values or {})) - set(_STEP_COLUMNS)
    if unknown:
        raise ValueError(f"a step cannot set {sorted(unknown)}")
    values: dict[str, Any] = {"id": incident_id, "state": state, "at": at}
    sql: LiteralString = "UPDATE incidents SET state = %(state)s, updated_at = %(at)s"
    for name, column in _STEP_COLUMNS.items():
        if name in set_now:
            sql += ", " + column + " = %(at)s"
        elif set_values is not None and name in set_values:
            sql += ", " + column + " = %(" + column + ")s"
            values[name] = set_values[name]
    await conn.execute(sql + " WHERE id = %(id)s", values)
    cur = await conn.execute(
        "INSERT INTO incident_history (incident_id, state, from_state, action, actor, at, note, level, "
        "attachments) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (incident_id, state, from_state, action, actor, at, note, level, Jsonb(list(attachments))))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
