"""SQL of the closed loop's durable parts: SLA timers, the dispatch queue (outbox) and silences.

Jobs are written in the same transaction as the transition that caused them (outbox), keyed by
an idempotency key (``ON CONFLICT (key) DO NOTHING``), so a crash either keeps both or neither.
Workers lease ready jobs with ``FOR UPDATE SKIP LOCKED``; a lease that is not completed in time
(the worker died) expires and the job is leased again: at-least-once, same key every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from hub.storage.rows import iso

Conn = psycopg.AsyncConnection[Any]


# -- SLA timers ----------------------------------------------------------------------------------

async def set_timer(conn: Conn, incident_id: str, kind: str, level: int, due: datetime) -> None:
    """Arm (or re-arm) the ``kind`` timer at ``level``; mirrors the deadline on the incident row."""
    await conn.execute(
        "INSERT INTO sla_timers (incident_id, kind, level, due_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (incident_id, kind, level) DO UPDATE SET due_at = EXCLUDED.due_at, fired_at = NULL, "
        "cancelled = false", (incident_id, kind, level, due))
    column = "accept_due" if kind == "accept" else "resolve_due"
    await conn.execute(f"UPDATE incidents SET {column} = %s WHERE id = %s", (due, incident_id))


async def cancel_timers(conn: Conn, incident_id: str, kind: str | None = None) -> None:
    if kind in (None, "accept"):
        await conn.execute("UPDATE sla_timers SET cancelled = true WHERE incident_id = %s AND kind = "
                           "'accept' "
                           "AND fired_at IS NULL", (incident_id,))
        await conn.execute("UPDATE incidents SET accept_due = NULL WHERE id = %s", (incident_id,))
    if kind in (None, "resolve"):
        await conn.execute("UPDATE sla_timers SET cancelled = true WHERE incident_id = %s AND kind = "
                           "'resolve' "
                           "AND fired_at IS NULL", (incident_id,))
        await conn.execute("UPDATE incidents SET resolve_due = NULL WHERE id = %s", (incident_id,))


@dataclass(frozen=True, slots=True)
class DueTimer:
    id: int
    incident_id: str
    kind: str
    level: int
    due_at: datetime


async def claim_due_timer(conn: Conn, now: datetime) -> DueTimer | None:
    """One due timer, locked for the caller's transaction (others skip it), marked fired."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, incident_id, kind, level, due_at FROM sla_timers WHERE fired_at IS NULL AND NOT "
        "cancelled "
        "AND due_at <= %s ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED", (now,))
    row = await cur.fetchone()
    if row is None:
        return None
    await conn.execute("UPDATE sla_timers SET fired_at = %s WHERE id = %s", (now, row["id"]))
    return DueTimer(row["id"], row["incident_id"], row["kind"], row["level"], row["due_at"])


async def next_due(conn: Conn) -> datetime | None:
    cur = await conn.execute("SELECT min(due_at) FROM sla_timers WHERE fired_at IS NULL AND NOT cancelled")
    row = await cur.fetchone()
    return row[0] if row else None


# -- dispatch jobs -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewJob:
    key: str  # idempotency key
    queue: str  # grid code or department (per-queue stats; the NATS subject)
    incident_id: str
    channel: dict[str, Any]  # {"type": "mqtt"} or {"type": "webhook", "person": "p1", "index": 0}
    notice: dict[str, Any]
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    key: str
    queue: str
    incident_id: str
    channel: dict[str, Any]
    notice: dict[str, Any]
    attempts: int  # including the current one


async def enqueue(conn: Conn, jobs: Sequence[NewJob]) -> int:
    """Insert jobs (inside the caller's transaction); returns how many were new."""
    new = 0
    for job in jobs:
        cur = await conn.execute(
            "INSERT INTO dispatch_jobs (key, queue, incident_id, channel, notice, next_at) "
            "VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s)) ON CONFLICT (key) DO NOTHING",
            (job.key, job.queue, job.incident_id, Jsonb(job.channel), Jsonb(job.notice), job.delay_s))
        new += cur.rowcount
    return new


_JOB_COLUMNS = "id, key, queue, incident_id, channel, notice, attempts"


def _job(row: dict[str, Any]) -> Job:
    return Job(row["id"], row["key"], row["queue"], row["incident_id"], row["channel"], row["notice"],
               row["attempts"])


async def lease(conn: Conn, node: str, limit: int, lease_s: float) -> list[Job]:
    """Lease up to ``limit`` ready jobs for ``lease_s`` seconds (counts an attempt)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "UPDATE dispatch_jobs SET leased_until = now() + make_interval(secs => %(lease)s), leased_by = "
        "%(node)s, "
        "attempts = attempts + 1 WHERE id IN (SELECT id FROM dispatch_jobs WHERE state = 'pending' "
        "AND next_at <= now() AND (leased_until IS NULL OR leased_until < now()) ORDER BY next_at, id "
        "LIMIT %(limit)s FOR UPDATE SKIP LOCKED) RETURNING " + _JOB_COLUMNS,
        {"lease": lease_s, "node": node, "limit": limit})
    return [_job(r) for r in await cur.fetchall()]


async def complete(conn: Conn, job_id: int) -> None:
    await conn.execute("UPDATE dispatch_jobs SET state = 'done', done_at = now(), leased_until = NULL, "
                       "last_error = '' WHERE id = %s AND state = 'pending'", (job_id,))


async def retry(conn: Conn, job_id: int, error: str, delay_s: float) -> None:
    await conn.execute("UPDATE dispatch_jobs SET next_at = now() + make_interval(secs => %s), leased_until = "
                       "NULL, last_error = %s WHERE id = %s AND state = 'pending'",
                       (delay_s, error[:500], job_id))


async def dead(conn: Conn, job_id: int, error: str) -> None:
    await conn.execute("UPDATE dispatch_jobs SET state = 'dead', leased_until = NULL, last_error = %s, "
                       "done_at = now() WHERE id = %s AND state = 'pending'", (error[:500], job_id))


async def release(conn: Conn, node: str) -> int:
    """Give back the leases ``node`` held (called when that node starts again after a crash)."""
    cur = await conn.execute("UPDATE dispatch_jobs SET leased_until = NULL WHERE leased_by = %s AND "
                             "state = 'pending' AND leased_until IS NOT NULL", (node,))
    return cur.rowcount


async def requeue_dead(conn: Conn, job_id: int) -> bool:
    """Move a dead job back to pending (operator's "retry" in the API)."""
    cur = await conn.execute("UPDATE dispatch_jobs SET state = 'pending', attempts = 0, next_at = now(), "
                             "done_at = NULL, relayed = false WHERE id = %s AND state = 'dead'", (job_id,))
    return cur.rowcount == 1


def _job_dict(row: dict[str, Any]) -> dict[str, Any]:
    notice = row["notice"] or {}
    return {"id": row["id"], "key": row["key"], "queue": row["queue"], "incident_id": row["incident_id"],
            "channel": row["channel"], "event": notice.get("event"), "recipient": notice.get("recipient", {}),
            "state": row["state"], "attempts": row["attempts"], "last_error": row["last_error"],
            "created_at": iso(row["created_at"]), "done_at": iso(row["done_at"]),
            "next_at": iso(row["next_at"])}


async def list_jobs(conn: Conn, *, state: str | None = None, incident_id: str | None = None,
                    limit: int = 200) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, key, queue, incident_id, channel, notice, state, attempts, last_error, created_at, "
        "done_at, "
        "next_at FROM dispatch_jobs WHERE (%(state)s::text IS NULL OR state = %(state)s) AND "
        "(%(inc)s::text IS NULL OR incident_id = %(inc)s) ORDER BY id DESC LIMIT %(limit)s",
        {"state": state, "inc": incident_id, "limit": limit})
    return [_job_dict(r) for r in await cur.fetchall()]


async def stats(conn: Conn) -> dict[str, int]:
    cur = await conn.execute("SELECT state, count(*) FROM dispatch_jobs GROUP BY state")
    out = {"pending": 0, "done": 0, "dead": 0}
    for state, n in await cur.fetchall():
        out[str(state)] = int(n)
    return out


# -- silences ------------------------------------------------------------------------------------

async def add_silence(conn: Conn, *, grid: str | None, source: str | None, kinds: Sequence[str],
                      starts: datetime | None, ends: datetime, reason: str,
                      created_by: str) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "INSERT INTO silences (grid, source, kinds, starts_at, ends_at, reason, created_by) VALUES "
        "(%s, %s, %s, COALESCE(%s, now()), %s, %s, %s) RETURNING *",
        (grid, source, list(kinds), starts, ends, reason, created_by))
    row = await cur.fetchone()
    assert row is not None
    return silence_dict(row)


def silence_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "grid": row["grid"], "source": row["source"], "kinds": list(row["kinds"]),
            "starts_at": iso(row["starts_at"]), "ends_at": iso(row["ends_at"]), "reason": row["reason"],
            "created_by": row["created_by"]}


async def active_silences(conn: Conn, at: datetime) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT * FROM silences WHERE starts_at <= %s AND ends_at > %s ORDER BY id", (at, at))
    return [silence_dict(r) for r in await cur.fetchall()]


async def current_silences(conn: Conn, at: datetime) -> list[dict[str, Any]]:
    """Silences not yet over at ``at``: active ones and those that start later."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT * FROM silences WHERE ends_at > %s ORDER BY starts_at, id", (at,))
    return [silence_dict(r) for r in await cur.fetchall()]


async def get_silence(conn: Conn, silence_id: int) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT * FROM silences WHERE id = %s", (silence_id,))
    row = await cur.fetchone()
    return silence_dict(row) if row is not None else None


async def delete_silence(conn: Conn, silence_id: int) -> bool:
    cur = await conn.execute("DELETE FROM silences WHERE id = %s", (silence_id,))
    return cur.rowcount == 1


def after(at: datetime, seconds: float) -> datetime:
    return at + timedelta(seconds=seconds)
