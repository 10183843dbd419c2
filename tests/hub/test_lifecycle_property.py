"""Property: whatever people POST to ``/api/incidents/{id}/actions``, the closed loop holds.

A whole hub runs in a background thread (``tests/support/live_hub.py``: real web app, RuntimeView,
IncidentService, dispatcher and SLA timers on real PostgreSQL). Hypothesis draws an incident (class,
grid, department), a start state — dispatched, accepted, resolved, closed, false_alarm, supervised
(not accepted; the SLA timers fired) or supervised after accepting — and a sequence of
(caller, action, note, satisfaction). Each step is POSTed over real HTTP and compared with
:class:`Model`, an independent reading of DESIGN.md's closed loop (not :mod:`alerts.lifecycle`):

(a) the status: 401 for a bad token, 404 outside the caller's grids and department, 403 when the
    role may not take the action, 409 when the state forbids it (or close lacks the 回访 rating, or a
    false alarm its reason), else 200;
(b) the stored state (and accepted/satisfaction/false-alarm reason) equals the model's after every step;
(c) the history grows by exactly one row per successful action, in order, with the caller as actor
    (plus the hub's own classify + dispatch after a reopen), and each row starts where the last ended;
(d) no state outside DESIGN.md's eight is ever shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from tests.support.live_hub import START_STATES, TOKENS, LiveHub, running_hub

DESIGN_STATES = frozenset({"received", "classified", "dispatched", "accepted", "resolved", "closed",
                           "supervised", "false_alarm"})
OPEN = frozenset({"received", "classified", "dispatched", "accepted", "supervised"})
ACTIONS = ("accept", "arrive", "resolve", "close", "reopen", "false_alarm")
RATINGS = ("satisfied", "basically_satisfied", "dissatisfied")

# -- who is who (from the people in live_hub.staff, written out here) ------------------------------
ROLE = {"w1": "grid_worker", "p1": "patrol", "w2": "grid_worker", "lead": "grid_leader",
        "duty": "duty_leader", "cop": "department", "env": "department", "op": "operator",
        "integ": "integrator", "adm": "admin"}
HANDLERS = frozenset({"grid_worker", "grid_leader", "patrol", "department", "duty_leader", "operator",
                      "admin"})
SUPERVISORS = frozenset({"grid_leader", "duty_leader", "operator", "admin"})  # close (回访) and reopen
MAY = {"accept": HANDLERS, "arrive": HANDLERS, "resolve": HANDLERS, "false_alarm": HANDLERS,
       "close": SUPERVISORS, "reopen": SUPERVISORS}
SERVES = {"w1": {"G1"}, "p1": {"G1"}, "w2": {"G2"}, "lead": {"S", "G1", "G2"}, "env": {"G2"}}  # else all
DEPARTMENT = {"cop": "公安", "env": "生态环境"}
CALLERS = ("bad", *ROLE)

KINDS = (("general", "G1", ""), ("general", "G2", ""), ("professional", "G1", "公安"),
         ("professional", "G2", "生态环境"), ("emergency", "G2", "公安"))


@dataclass(frozen=True)
class Step:
    caller: str
    action: str
    note: str = ""
    satisfaction: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"action": self.action}
        if self.note:
            body["note"] = self.note
        if self.satisfaction is not None:
            body["satisfaction"] = self.satisfaction
        return body


@dataclass
class Model:
    """The closed loop as DESIGN.md tells it, for one incident."""

    state: str
    accepted: bool
    grid: str
    department: str
    satisfaction: str | None = None
    reason: str | None = None
    history: list[tuple[str, str, str]] = field(default_factory=list)  # (action, actor, state) since start

    def sees(self, caller: str) -> bool:
        in_grids = self.grid in SERVES.get(caller, {self.grid})
        if caller in DEPARTMENT:  # a department's member (and nothing else): its own incidents, in its grids
            return in_grids and DEPARTMENT[caller] == self.department
        return in_grids

    def legal(self, action: str) -> bool:
        s = self.state
        waiting = s in ("received", "classified", "dispatched") or (s == "supervised" and not self.accepted)
        handling = s == "accepted" or (s == "supervised" and self.accepted)
        return {"accept": waiting,
                "arrive": handling,
                "resolve": handling,
                "close": s == "resolved",
                "reopen": s in ("resolved", "closed", "false_alarm"),
                "false_alarm": s in OPEN}[action]

    def expect(self, step: Step) -> int:
        if step.caller == "bad":
            return 401
        if not self.sees(step.caller):
            return 404
        if ROLE[step.caller] not in MAY[step.action]:
            return 403
        if not self.legal(step.action):
            return 409
        if step.action == "close" and step.satisfaction is None:
            return 409  # no 回访 rating
        if step.action == "false_alarm" and not step.note.strip():
            return 409  # a false alarm needs its reason
        return 200

    def apply(self, step: Step) -> None:
        who, action = step.caller, step.action
        if action == "accept":
            self.state, self.accepted = "accepted", True
        elif action == "resolve":
            self.state = "resolved"
        elif action == "close":
            self.satisfaction = step.satisfaction
            if step.satisfaction == "dissatisfied":  # 不满意: handled again
                self.state, self.accepted = "dispatched", False
            else:
                self.state = "closed"
        elif action == "false_alarm":
            self.state, self.reason = "false_alarm", step.note.strip()
        elif action == "reopen":  # back through 接收登记 → 梳理分类 → 分流转办
            self.state, self.accepted, self.satisfaction, self.reason = "dispatched", False, None, None
            self.history += [("reopen", who, "received"), ("classify", "system", "classified"),
                             ("dispatch", "system", "dispatched")]
            return
        self.history.append((action, who, self.state))


def start_model(state: str, grid: str, department: str) -> Model:
    accepted = state in ("accepted", "resolved", "closed", "supervised_accepted")
    return Model(state.removesuffix("_accepted"), accepted, grid, department,
                 satisfaction="satisfied" if state == "closed" else None,
                 reason="setup" if state == "false_alarm" else None)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveHub]:
    with running_hub(anonymous="none") as hub:
        yield hub


steps = st.builds(Step,
                  caller=st.sampled_from((*CALLERS, "duty", "op", "lead", "w1", "p1")),  # more of the able
                  action=st.sampled_from(ACTIONS),
                  note=st.sampled_from(("", "  ", "checked on site")),
                  satisfaction=st.sampled_from((None, *RATINGS)))

LOOP = [Step("w1", "accept"), Step("w1", "arrive"), Step("w1", "resolve"), Step("op", "close"),
        Step("op", "close", satisfaction="dissatisfied"), Step("p1", "accept"), Step("p1", "resolve"),
        Step("lead", "close", satisfaction="basically_satisfied"), Step("duty", "reopen"),
        Step("w1", "false_alarm", note=" "), Step("w1", "false_alarm", note="a cat"), Step("op", "reopen"),
        Step("adm", "accept"), Step("adm", "resolve"), Step("adm", "close", satisfaction="satisfied")]


@settings(max_examples=50, deadline=None)
@given(start=st.sampled_from(START_STATES), kind=st.sampled_from(KINDS), script=st.lists(steps, max_size=15))
@example(start="dispatched", kind=KINDS[0], script=LOOP)
@example(start="supervised", kind=KINDS[0], script=[
    Step("w2", "accept"), Step("integ", "accept"), Step("w1", "resolve"), Step("p1", "accept"),
    Step("bad", "resolve"), Step("p1", "resolve"), Step("w1", "close", satisfaction="satisfied"),
    Step("op", "close", satisfaction="dissatisfied"), Step("w1", "accept")])
@example(start="supervised_accepted", kind=KINDS[3], script=[
    Step("env", "accept"), Step("env", "arrive"), Step("cop", "resolve"), Step("env", "resolve"),
    Step("lead", "reopen"), Step("env", "false_alarm", note="test run"), Step("w2", "reopen")])
@example(start="false_alarm", kind=KINDS[4], script=[
    Step("w2", "false_alarm", note="again"), Step("cop", "reopen"), Step("duty", "reopen"),
    Step("cop", "false_alarm"), Step("cop", "false_alarm", note="drill"), Step("op", "reopen")])
def test_any_action_sequence_follows_the_closed_loop(live: LiveHub, start: str, kind: tuple[str, str, str],
                                                     script: list[Step]) -> None:
    cls, grid, department = kind
    inc_id = live.open_in_state(start, cls=cls, grid=grid, department=department)
    model = start_model(start, grid, department)
    base = len(_stored(live, inc_id, model)["history"])
    for n, step in enumerate(script):
        where = f"step {n} {step} from {model.state} (accepted={model.accepted})"
        expected = model.expect(step)
        before = model.state
        token = TOKENS.get(step.caller, "not-a-token-of-anyone-0123")
        reply = live.call("POST", f"/api/incidents/{inc_id}/actions", token=token, body=step.body())
        assert reply.status == expected, f"{where}: HTTP {reply.status}, expected {expected}: {reply.body}"
        event(f"{step.action} → {expected}")
        if expected == 200:
            model.apply(step)
            assert reply.body["state"] == model.state, where
        elif expected == 409:
            assert reply.body["detail"]["state"] == before, where
            if not model.legal(step.action):  # the state's fault: the hint lists what the state allows
                assert set(reply.body["detail"]["allowed"]) == {a for a in ACTIONS if model.legal(a)}, where
        stored = _stored(live, inc_id, model)
        rows = [(h["action"], h["actor"], h["state"]) for h in stored["history"][base:]]
        assert rows == model.history, f"{where}: history {rows}"


def _stored(live: LiveHub, inc_id: str, model: Model) -> dict[str, Any]:
    """The incident as the API shows it, checked against the model; (b), (c) chain and (d)."""
    got = live.call("GET", f"/api/incidents/{inc_id}", token=TOKENS["duty"])
    assert got.status == 200, got
    item: dict[str, Any] = got.body
    assert item["state"] in DESIGN_STATES, item["state"]
    assert all(h["state"] in DESIGN_STATES for h in item["history"])
    assert item["state"] == model.state == item["history"][-1]["state"]
    assert (item["accepted_at"] is not None, item["satisfaction"], item["false_alarm_reason"]) == \
        (model.accepted, model.satisfaction, model.reason), item
    for prev, row in zip(item["history"], item["history"][1:], strict=False):
        assert row["from"] == prev["state"], f"history row {row} does not start where {prev} ended"
    return item
