"""The one incident state machine: the closed loop of DESIGN.md.

::

    received ─classify─▶ classified ─dispatch─▶ dispatched ─accept─▶ accepted ─resolve─▶ resolved
    (接收登记)            (梳理分类)             (分流转办)           (部门承办)            (结果反馈)
                                                                                          │ close + 回访
                                                           closed (办结归档) ◀── 满意/基本满意 ┤
                                                           dispatched (handled again) ◀── 不满意 ┘

    supervised (跟踪督办): an SLA timer fired (not accepted / not resolved in time); accept and
      resolve still work from there; each further escalation raises the level (0 → 1 → 2).
    false_alarm: from any open state, with a reason.
    reopen: resolved | closed | false_alarm → received (then classified and dispatched again).

``arrive`` (on site) keeps the state and records the time. System actions (classify,
dispatch, supervise, escalate) are taken only by the hub itself; people's actions are
checked against their roles here and against their grids in :mod:`alerts.access`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from hub.errors import InvalidTransition

STATES: Final = ("received", "classified", "dispatched", "accepted", "resolved", "closed", "supervised",
                 "false_alarm")
OPEN_STATES: Final = ("received", "classified", "dispatched", "accepted", "supervised")
FINAL_STATES: Final = ("closed", "false_alarm")
SATISFACTION: Final = ("satisfied", "basically_satisfied", "dissatisfied")  # 满意 / 基本满意 / 不满意

PEOPLE_ACTIONS: Final = ("accept", "arrive", "resolve", "close", "reopen", "false_alarm")
SYSTEM_ACTIONS: Final = ("classify", "dispatch", "supervise", "escalate")
ACTIONS: Final = PEOPLE_ACTIONS + SYSTEM_ACTIONS

_HANDLERS = frozenset({"grid_worker", "grid_leader", "patrol", "department", "duty_leader", "operator",
                       "admin"})
_SUPERVISORS = frozenset({"grid_leader", "duty_leader", "operator", "admin"})
_SYSTEM = frozenset({"system"})

#: Who may take each action (roles of DESIGN.md; "system" = the hub itself).
ROLES: Final[dict[str, frozenset[str]]] = {
    "accept": _HANDLERS, "arrive": _HANDLERS, "resolve": _HANDLERS, "false_alarm": _HANDLERS,
    "close": _SUPERVISORS, "reopen": _SUPERVISORS,
    "classify": _SYSTEM, "dispatch": _SYSTEM, "supervise": _SYSTEM, "escalate": _SYSTEM,
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the machine needs to know about an incident."""

    id: str
    state: str
    accepted: bool = False  # accepted_at is set (and not cleared by a dissatisfied follow-up)
    level: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    """The result of an allowed action: the new state and the columns to set (``now`` = transition time)."""

    action: str
    from_state: str
    state: str
    level: int
    set_now: tuple[str, ...] = ()  # timestamp columns set to the transition time
    set_values: dict[str, Any] = field(default_factory=dict)  # other columns


def _sources(action: str, snap: Snapshot) -> bool:
    s = snap.state
    match action:
        case "classify":
            return s == "received"
        case "dispatch":
            return s == "classified"
        case "accept":
            return s in ("received", "classified", "dispatched") or (s == "supervised" and not snap.accepted)
        case "arrive" | "resolve":
            return s == "accepted" or (s == "supervised" and snap.accepted)
        case "close":
            return s == "resolved"
        case "reopen":
            return s in ("resolved", "closed", "false_alarm")
        case "false_alarm":
            return s in OPEN_STATES
        case "supervise":
            return s in OPEN_STATES and s != "supervised"
        case "escalate":
            return s == "supervised"
    return False


def allowed_actions(snap: Snapshot, roles: frozenset[str] | set[str] | None = None) -> tuple[str, ...]:
    """Actions possible from ``snap`` (for these roles, when given)."""
    return tuple(a for a in ACTIONS if _sources(a, snap) and (roles is None or ROLES[a] & set(roles)))


def may(action: str, roles: frozenset[str] | set[str]) -> bool:
    """True if any of ``roles`` may take ``action`` at all (state aside)."""
    return bool(ROLES.get(action, frozenset()) & set(roles))


def apply(snap: Snapshot, action: str, *, satisfaction: str | None = None, note: str = "") -> Step:
    """The step ``action`` takes from ``snap``; raises :class:`InvalidTransition` if not allowed."""
    if action not in ROLES or not _sources(action, snap):
        raise InvalidTransition(snap.id, snap.state, action,
                                tuple(a for a in allowed_actions(snap) if a in PEOPLE_ACTIONS))
    s = snap.state
    match action:
        case "classify":
            return Step(action, s, "classified", snap.level)
        case "dispatch":
            return Step(action, s, "dispatched", snap.level, set_now=("dispatched_at",))
        case "accept":
            return Step(action, s, "accepted", snap.level, set_now=("accepted_at",))
        case "arrive":
            return Step(action, s, s, snap.level, set_now=("arrived_at",))
        case "resolve":
            return Step(action, s, "resolved", snap.level, set_now=("resolved_at",))
        case "close":
            if satisfaction not in SATISFACTION:
                raise InvalidTransition(snap.id, s, action, (), reason=(
                    "close needs the follow-up rating (回访): satisfaction = " + " | ".join(SATISFACTION)))
            if satisfaction == "dissatisfied":  # 不满意: back to the handlers
                return Step(action, s, "dispatched", snap.level, set_now=("dispatched_at",),
                            set_values={"satisfaction": satisfaction, "accepted_at": None,
                                        "arrived_at": None, "resolved_at": None})
            return Step(action, s, "closed", snap.level, set_now=("closed_at",),
                        set_values={"satisfaction": satisfaction})
        case "reopen":
            return Step(action, s, "received", 0, set_values={
                "accepted_at": None, "arrived_at": None, "resolved_at": None, "closed_at": None,
                "satisfaction": None, "false_alarm_reason": None, "level": 0})
        case "false_alarm":
            if not note.strip():
                raise InvalidTransition(snap.id, s, action, (), reason="false_alarm needs a reason in note")
            return Step(action, s, "false_alarm", snap.level, set_now=("closed_at",),
                        set_values={"false_alarm_reason": note.strip()})
        case "supervise":
            return Step(action, s, "supervised", snap.level, set_now=("supervised_at",),
                        set_values={"overdue": True})
        case _:  # escalate
            level = min(snap.level + 1, 2)
            return Step(action, s, "supervised", level, set_values={"level": level})
