"""Conversions between hub values and database rows / API dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, LiteralString

from psycopg.types.json import Jsonb

from hub.events import RuleHit, SourceEvent

INCIDENT_COLUMNS: LiteralString = (
    "id, class, state, grid, title, kind, opened_at, updated_at, sources, evidence, count, last_seen, "
    "department, level, overdue, dispatched_at, accepted_at, arrived_at, resolved_at, closed_at, "
    "supervised_at, assignee, satisfaction, false_alarm_reason, accept_due, resolve_due, dedup_keys"
)
HISTORY_COLUMNS: LiteralString = "id, state, from_state, action, actor, at, note, level, attachments"


def ts(value: float | datetime | str) -> datetime:
    """A timezone-aware UTC datetime from epoch seconds, a datetime or an ISO 8601 string."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return ts(datetime.fromisoformat(value))
    return datetime.fromtimestamp(value, UTC)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


EVENT_SQL: LiteralString = (
    "INSERT INTO events (id, at, source_id, kind, grid, data) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)


def event_params(ev: SourceEvent) -> tuple[Any, ...]:
    return (ev.id, ts(ev.at), ev.source_id, str(ev.kind), ev.grid, Jsonb(ev.data))


RULE_HIT_SQL: LiteralString = (
    "INSERT INTO rule_hits (id, at, camera_id, rule, zone, track_id, label, confidence, box, "
    "captured_at, frame_seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)


def rule_hit_params(hit: RuleHit) -> tuple[Any, ...]:
    return (hit.id, ts(hit.at), hit.camera_id, hit.rule, hit.zone, hit.track_id, hit.label,
            float(hit.confidence), [float(v) for v in hit.box], ts(hit.captured_at), hit.frame_seq)


ALERT_SQL: LiteralString = (
    "INSERT INTO alerts (id, at, kind, source_type, source_id, rule, zone, grid, incident_id, data) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
    "incident_id = EXCLUDED.incident_id"
)


def incident_dict(row: dict[str, Any]) -> dict[str, Any]:
    """API contract v1 shape (DESIGN.md) plus ``kind``, ``count`` and ``last_seen``."""
    return {
        "id": row["id"],
        "class": row["class"],
        "state": row["state"],
        "grid": row["grid"],
        "title": row["title"],
        "kind": row["kind"],
        "opened_at": iso(row["opened_at"]),
        "updated_at": iso(row["updated_at"]),
        "last_seen": iso(row["last_seen"]),
        "count": row["count"],
        "sources": list(row["sources"] or []),
        "evidence": list(row["evidence"] or []),
        "department": row["department"],
        "level": row["level"],
        "overdue": row["overdue"],
        "dispatched_at": iso(row["dispatched_at"]),
        "accepted_at": iso(row["accepted_at"]),
        "arrived_at": iso(row["arrived_at"]),
        "resolved_at": iso(row["resolved_at"]),
        "closed_at": iso(row["closed_at"]),
        "supervised_at": iso(row["supervised_at"]),
        "assignee": row["assignee"],
        "satisfaction": row["satisfaction"],
        "false_alarm_reason": row["false_alarm_reason"],
        "accept_due": iso(row["accept_due"]),
        "resolve_due": iso(row["resolve_due"]),
    }


def history_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "state": row["state"], "from": row["from_state"], "action": row["action"],
            "actor": row["actor"], "at": iso(row["at"]), "note": row["note"], "level": row["level"],
            "attachments": list(row["attachments"] or [])}
