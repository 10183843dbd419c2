"""Minimal incident state transitions for operator actions.

A later issue replaces this with the full closed-loop state machine (classify, dispatch,
supervise, follow-up visit). Until then an action moves an incident as follows::

    accept       received | classified | dispatched | supervised      -> accepted
    arrive       received | classified | dispatched | accepted | supervised -> accepted (on site)
    resolve      accepted | supervised                                 -> resolved
    close        resolved                                              -> closed
    reopen       resolved | closed | false_alarm                       -> received
    false_alarm  received | classified | dispatched | accepted | supervised -> false_alarm
"""

from __future__ import annotations

from typing import Final

from hub.errors import InvalidTransition

STATES: Final = ("received", "classified", "dispatched", "accepted", "resolved", "closed",
                 "supervised", "false_alarm")
OPEN_STATES: Final = ("received", "classified", "dispatched", "accepted", "supervised")

_ACTIONS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "accept": (frozenset({"received", "classified", "dispatched", "supervised"}), "accepted"),
    "arrive": (frozenset({"received", "classified", "dispatched", "accepted", "supervised"}), "accepted"),
    "resolve": (frozenset({"accepted", "supervised"}), "resolved"),
    "close": (frozenset({"resolved"}), "closed"),
    "reopen": (frozenset({"resolved", "closed", "false_alarm"}), "received"),
    "false_alarm": (frozenset(OPEN_STATES), "false_alarm"),
}
ACTIONS: Final = tuple(_ACTIONS)


def next_state(incident_id: str, state: str, action: str) -> str:
    """The state after ``action``; raises :class:`InvalidTransition` if not allowed."""
    allowed_actions = tuple(a for a, (sources, _) in _ACTIONS.items() if state in sources)
    rule = _ACTIONS.get(action)
    if rule is None or state not in rule[0]:
        raise InvalidTransition(incident_id, state, action, allowed_actions)
    return rule[1]
