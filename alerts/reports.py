"""Incidents people report by hand: a resident's phone call to the 综治中心, a patrol's finding.

:func:`open_report` checks who may report where (:data:`REPORTERS`; the grid must be known when grids
are configured, and within the caller's grids), takes the class and department from ``dispatch.rules``
(:mod:`alerts.classification`) unless the reporter chose a class, and opens the incident through
:meth:`alerts.service.IncidentService.open` — classified, dispatched, timers armed, notices queued, the
reporter as the actor of the first history row — then announces it on ``incident`` as the alert engine
does. With an idempotency key a retried report returns the incident the first attempt opened; the key
is kept per reporter (``report:<caller id>:<key>``), so two people's keys never meet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alerts.classification import classify, department
from alerts.people import Caller, Directory
from alerts.service import IncidentService
from hub.bus import TOPIC_INCIDENT
from hub.errors import Forbidden, HubError
from hub.events import new_id
from hub.storage import incidents as inc_sql

log = logging.getLogger(__name__)

#: Roles that may report an incident (a department member or an integrator only handles or reads).
REPORTERS = frozenset({"grid_worker", "grid_leader", "patrol", "duty_leader", "operator", "admin"})


class UnknownGrid(HubError, ValueError):
    """The report names a grid the configured grid tree does not have (HTTP 400)."""

    def __init__(self, grid: str, known: Sequence[str]) -> None:
        self.grid = grid
        self.known = tuple(known)
        super().__init__(f"unknown grid {grid!r}")


@dataclass(frozen=True, slots=True)
class Report:
    kind: str
    title: str
    grid: str
    cls: str | None = None  # None: by dispatch.rules
    note: str = ""
    location: tuple[float, float] | None = None  # (lon, lat)
    attachments: tuple[dict[str, Any], ...] = ()  # [{kind, url, name}] under /evidence/
    idem_key: str | None = None


def check(directory: Directory, caller: Caller, grid: str) -> None:
    """Raise :class:`Forbidden` unless ``caller`` may report in ``grid``; :class:`UnknownGrid` when
    grids are configured and ``grid`` is not one of them."""
    if not caller.roles & REPORTERS:
        raise Forbidden(f"{caller.id}: role {sorted(caller.roles)} may not report incidents "
                        f"(roles that may: {', '.join(sorted(REPORTERS))})")
    known = directory.tree.grids
    if known and grid not in known:
        raise UnknownGrid(grid, sorted(known))
    if not directory.in_scope(caller.grids, grid):
        raise Forbidden(f"{caller.id}: grid {grid} is outside the grids you serve "
                        f"({', '.join(caller.grids) or '-'})")


def idem_key(caller: Caller, key: str) -> str:
    return f"report:{caller.id}:{key}"


async def open_report(service: IncidentService, caller: Caller, report: Report, *,
                      night: bool = False) -> tuple[dict[str, Any], bool]:
    """Open the reported incident; returns it (with history) and True, or — when the reporter's
    idempotency key was used before — the incident it opened then and False."""
    check(service.directory, caller, report.grid)
    key = idem_key(caller, report.idem_key) if report.idem_key is not None else None
    if key is not None and (first := await inc_sql.get_by_idem_key(service.db.pool, key)) is not None:
        return first, False
    rules = service.cfg.rules
    cls = report.cls or classify(report.kind, night=night, rules=rules)
    at = service.now().isoformat()
    source: dict[str, Any] = {"type": "manual", "id": caller.id, "name": caller.name, "at": at}
    if report.location is not None:
        source["location"] = list(report.location)
    evidence = [{"kind": a.get("kind", "photo"), "url": a["url"], "at": at,
                 **({"name": a["name"]} if "name" in a else {})} for a in report.attachments]
    opened = await service.open(id=new_id(), kind=report.kind, cls=cls, title=report.title,
                                grid=report.grid, department=department(report.kind, rules),
                                sources=[source], evidence=evidence, actor=caller, note=report.note,
                                idem_key=key)
    if opened is None:  # a concurrent attempt with the same key committed first
        first = await inc_sql.get_by_idem_key(service.db.pool, key or "")
        if first is None:
            raise LookupError(f"incident with idempotency key of {caller.id} vanished")
        return first, False
    announced = dict(opened)
    announced.pop("history", None)
    service.bus.publish(TOPIC_INCIDENT, announced)
    log.info("incident %s reported by %s in %s: %s (%s)", opened["id"], caller.id, report.grid,
             report.kind, cls)
    return opened, True
