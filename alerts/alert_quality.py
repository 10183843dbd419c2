"""Alert quality: which alert kinds and sources cry wolf, and why (``GET /api/kpis/alerts``).

Every incident closed as a false alarm carries the handler's reason (``false_alarm`` needs a note).
Grouped by the incident's kind and its first source (the camera or device that raised it), this
gives the false-alarm rate per rule and source and the most frequent reasons — what an integrator
looks at to move a zone, raise a dwell time or replace a flaky door contact.

``false_alarms`` counts incidents whose current state is ``false_alarm``; ``reasons`` are the notes
of every ``false_alarm`` action in the period's incidents (a reopened one keeps its reason), the
three most frequent first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, LiteralString

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from alerts.kpis import aware

TOP_REASONS = 3

_SCOPE: LiteralString = (
    "SELECT id, kind, state, sources->0->>'type' AS source_type, sources->0->>'id' AS source_id "
    "FROM incidents WHERE opened_at >= %(since)s AND opened_at < %(until)s"
)
_REPORT: LiteralString = (
    ") , reasons AS ("
    "  SELECT s.kind, s.source_type, s.source_id, h.note AS reason, count(*)::int AS n"
    "  FROM scope s JOIN incident_history h ON h.incident_id = s.id AND h.action = 'false_alarm'"
    "  GROUP BY 1, 2, 3, 4)"
    " SELECT kind, source_type, source_id, count(*)::int AS incidents,"
    "  count(*) FILTER (WHERE state = 'false_alarm')::int AS false_alarms,"
    "  count(*) FILTER (WHERE state = 'false_alarm')::float8 / count(*) AS false_alarm_rate,"
    "  COALESCE((SELECT jsonb_agg(jsonb_build_object('reason', r.reason, 'count', r.n)"
    "                             ORDER BY r.n DESC, r.reason)"
    "            FROM (SELECT reason, n FROM reasons r WHERE r.kind = scope.kind"
    "                  AND r.source_type IS NOT DISTINCT FROM scope.source_type"
    "                  AND r.source_id IS NOT DISTINCT FROM scope.source_id"
    "                  ORDER BY n DESC, reason LIMIT %(top)s) r), '[]'::jsonb) AS reasons"
    " FROM scope GROUP BY kind, source_type, source_id"
    " ORDER BY false_alarms DESC, incidents DESC, kind, source_id"
)


async def alert_quality(conn: AsyncConnection[Any], *, since: datetime, until: datetime,
                        grids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One row per (kind, first source) of the incidents opened in ``[since, until)`` in ``grids``
    (None = every incident): ``{kind, source_type, source_id, incidents, false_alarms,
    false_alarm_rate, reasons: [{reason, count}]}``, the noisiest first."""
    params: dict[str, Any] = {"since": aware("since", since), "until": aware("until", until),
                              "top": TOP_REASONS}
    scope = _SCOPE
    if grids is not None:
        scope += " AND grid = ANY(%(grids)s)"
        params["grids"] = sorted(set(grids))
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("WITH scope AS MATERIALIZED (" + scope + _REPORT, params)
    return await cur.fetchall()
