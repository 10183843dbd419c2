"""Who may do what over the API: a role × endpoint matrix against a whole hub over real HTTP.

Two real hubs (``tests/support/live_hub.py``: the real web app, ``RuntimeView``, ``IncidentService``,
dispatcher and SLA timers on a fresh PostgreSQL schema), one with ``http.anonymous: none`` and one with
``http.anonymous: operator`` (the ``anon@op``/``bad@op`` columns). Grids: D > S > G1, G2. People: w1
(grid_worker G1), p1 (patrol G1), w2 (grid_worker G2, plus a webhook that always fails, so its
notices end in the dead-letter list), lead (grid_leader S), duty (duty_leader), cop (department 公安,
every grid), env (department 生态环境, grid G2; members of a department and nothing else see only their
department's incidents in their grids), op (operator D), integ (integrator), adm (admin).

:data:`MATRIX` is the table: one row per request with the expected status per caller, in the column
order of :data:`COLUMNS`. A row's ``target`` names a standing incident (read-only rows), a
:class:`Fresh` incident made for each cell (actions), or a delivery job. To cover a new endpoint, add
a row. Besides the status every cell checks the body: the error shape (401 with
``WWW-Authenticate: Bearer``), nothing changed after a refused action, the new state, assignee and
history actor after an accepted one, and the row's own ``check``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from tests.alerts.loop_support import person
from tests.support.live_hub import TOKENS, LiveHub, Reply, free_port, running_hub, staff

COLUMNS = ("anon", "bad", "w1", "p1", "w2", "lead", "duty", "cop", "env", "op", "integ", "adm", "anon@op",
           "bad@op")
BAD_TOKEN = "not-a-token-of-anyone-0123"
STANDING = {"g1": ("general", "G1", ""), "g2": ("general", "G2", ""), "cop1": ("professional", "G1", "公安"),
            "env1": ("professional", "G2", "生态环境")}
#: Standing incidents each caller sees (independent of the code: grids, subtrees and departments; a
#: member of a department and nothing else sees only their department's incidents in their grids).
SEES = {"w1": {"g1", "cop1"}, "p1": {"g1", "cop1"}, "w2": {"g2", "env1"}, "env": {"env1"}, "cop": {"cop1"}}
#: Grids whose KPI rows each caller gets (departments see only their grids here).
KPI_GRIDS = {"w1": {"G1"}, "p1": {"G1"}, "w2": {"G2"}, "env": {"G2"}}


@dataclass(frozen=True)
class Fresh:
    """A new incident per cell, brought to ``state`` first."""

    state: str
    cls: str = "general"
    grid: str = "G1"
    department: str = ""


@dataclass(frozen=True)
class Cell:
    caller: str
    world: World
    target: str
    reply: Reply


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    path: str  # "{id}" is replaced by the target
    statuses: str  # one status per column of COLUMNS
    body: dict[str, Any] | None = None
    target: str | Fresh | None = None  # STANDING key, Fresh(...), "dead_job", "done_job"
    to: str | None = None  # an action's state after success
    check: Callable[[Cell], None] | None = None

    def expected(self) -> dict[str, int]:
        codes = [int(c) for c in self.statuses.split()]
        assert len(codes) == len(COLUMNS), f"{self.name}: {len(codes)} statuses for {len(COLUMNS)} columns"
        return dict(zip(COLUMNS, codes, strict=True))


def _caller_id(column: str) -> str:
    return "operator" if column == "anon@op" else column


# -- row checks ------------------------------------------------------------------------------------
def _visible(cell: Cell) -> None:
    if cell.reply.status != 200:
        return
    who = _caller_id(cell.caller)
    standing = {key for key, inc_id in cell.world.standing.items()
                if inc_id in {i["id"] for i in cell.reply.body}}
    assert standing == SEES.get(who, set(STANDING)), standing
    for item in cell.reply.body:
        assert {"id", "class", "state", "grid", "title", "opened_at", "updated_at", "sources",
                "evidence"} <= set(item)
        if who in ("env", "cop"):  # a department: its own incidents only
            assert item["department"] == {"env": "生态环境", "cop": "公安"}[who], item
        if who in KPI_GRIDS:  # nothing outside the caller's grids, ever
            assert item["grid"] in KPI_GRIDS[who], item


def _one(cell: Cell) -> None:
    if cell.reply.status == 200:
        assert cell.reply.body["id"] == cell.target
        assert [h["action"] for h in cell.reply.body["history"]] == ["open", "classify", "dispatch"]
    elif cell.reply.status == 404:
        assert cell.reply.body["detail"] == {"id": cell.target}, "another grid's incident: as if absent"


def _wrong_state(allowed: list[str]) -> Callable[[Cell], None]:
    def check(cell: Cell) -> None:
        if cell.reply.status == 409:
            assert cell.reply.body["detail"]["allowed"] == allowed, cell.reply.body
    return check


def _needs(word: str) -> Callable[[Cell], None]:
    def check(cell: Cell) -> None:
        if cell.reply.status == 409:
            assert word in cell.reply.body["detail"]["reason"], cell.reply.body
    return check


def _dissatisfied(cell: Cell) -> None:
    if cell.reply.status == 200:
        body = cell.reply.body
        assert body["satisfaction"] == "dissatisfied" and body["accepted_at"] is None, body


def _reopened(cell: Cell) -> None:
    if cell.reply.status == 200:
        tail = [(h["action"], h["actor"]) for h in cell.reply.body["history"][-3:]]
        assert tail == [("reopen", _caller_id(cell.caller)), ("classify", "system"), ("dispatch", "system")]
        assert cell.reply.body["satisfaction"] is None and cell.reply.body["closed_at"] is None


def _jobs(cell: Cell) -> None:
    if cell.reply.status == 200:
        assert cell.reply.body and all({"id", "key", "incident_id", "channel", "state", "attempts"}
                                       <= set(j) for j in cell.reply.body)


def _dead(cell: Cell) -> None:
    if cell.reply.status == 200:
        assert cell.reply.body and all(j["state"] == "dead" and j["last_error"] for j in cell.reply.body)
        assert {j["channel"]["type"] for j in cell.reply.body} == {"webhook"}
        assert {j["recipient"]["id"] for j in cell.reply.body} == {"w2"}


def _stats(cell: Cell) -> None:
    if cell.reply.status == 200:
        assert set(cell.reply.body) == {"pending", "done", "dead"} and cell.reply.body["dead"] >= 1


def _retried(cell: Cell) -> None:
    job = int(cell.target)
    before = cell.world.dead_done_at[job]
    if cell.reply.status == 200:
        assert cell.reply.body == {"id": job, "state": "pending"}
        deadline = time.monotonic() + 10  # delivered again (and dead again: the webhook still fails)
        while not any(j["id"] == job and _at(j["done_at"]) > _at(before) for j in cell.world.hub.dead_jobs()):
            assert time.monotonic() < deadline, "the retried job was not delivered again"
            time.sleep(0.05)
    else:
        still = [j["done_at"] for j in cell.world.hub.dead_jobs() if j["id"] == job]
        assert still == [before], "refused, yet moved"


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _no_such_job(cell: Cell) -> None:
    if cell.reply.status == 404:
        assert cell.reply.body["detail"] == {"id": cell.target}


def _kpis(cell: Cell) -> None:
    if cell.reply.status == 200:
        grids = {r["grid"] for r in cell.reply.body}
        assert grids == KPI_GRIDS.get(_caller_id(cell.caller), {"G1", "G2"}), cell.reply.body
        assert all({"day", "opened", "closed", "closure_rate", "overdue"} <= set(r) for r in cell.reply.body)


def _alert_quality(cell: Cell) -> None:
    if cell.reply.status == 200:
        assert cell.reply.body, "the standing incidents are in the period"
        for r in cell.reply.body:
            assert {"kind", "source_type", "source_id", "incidents", "false_alarms", "false_alarm_rate",
                    "reasons"} <= set(r), r


def _action(name: str, action: str, start: Fresh, statuses: str, *, to: str | None = None,
            check: Callable[[Cell], None] | None = None, **extra: Any) -> Row:
    return Row(name, "POST", "/api/incidents/{id}/actions", statuses, {"action": action, **extra}, start,
               to, check)


# -- the matrix ------------------------------------------------------------------------------------
G1, G2 = Fresh("dispatched"), Fresh("dispatched", grid="G2")
COP1 = Fresh("dispatched", "professional", department="公安")
ENV1 = Fresh("dispatched", "professional", grid="G2", department="生态环境")
ALL_OK = "401 401 200 200 200 200 200 200 200 200 200 200 200 401"
CONTROL_ROOM = "401 401 403 403 403 403 200 403 403 200 403 200 200 401"  # operator, duty_leader, admin
MATRIX = [
    #    ano bad w1  p1  w2  lea dut cop env op  int adm a@o b@o   (= COLUMNS)
    Row("list incidents", "GET", "/api/incidents",
        ALL_OK, check=_visible),
    Row("get G1 incident", "GET", "/api/incidents/{id}",
        "401 401 200 200 404 200 200 404 404 200 200 200 200 401", target="g1", check=_one),
    Row("get G2 incident", "GET", "/api/incidents/{id}",
        "401 401 404 404 200 200 200 404 404 200 200 200 200 401", target="g2", check=_one),
    Row("get 公安 G1", "GET", "/api/incidents/{id}",
        "401 401 200 200 404 200 200 200 404 200 200 200 200 401", target="cop1", check=_one),
    Row("get 生态环境 G2", "GET", "/api/incidents/{id}",
        "401 401 404 404 200 200 200 404 200 200 200 200 200 401", target="env1", check=_one),
    Row("get missing", "GET", "/api/incidents/{id}",
        "401 401 404 404 404 404 404 404 404 404 404 404 404 401", target="no-such-incident", check=_one),
    _action("accept general G1", "accept", G1,
        "401 401 200 200 404 200 200 404 404 200 403 200 200 401", to="accepted"),
    _action("accept 公安 G1", "accept", COP1,
        "401 401 200 200 404 200 200 200 404 200 403 200 200 401", to="accepted"),
    _action("accept 生态环境 G2", "accept", ENV1,
        "401 401 404 404 200 200 200 404 200 200 403 200 200 401", to="accepted"),
    _action("accept general G2", "accept", G2,
        "401 401 404 404 200 200 200 404 404 200 403 200 200 401", to="accepted"),
    _action("accept when closed", "accept", Fresh("closed"),
        "401 401 409 409 404 409 409 404 404 409 403 409 409 401", check=_wrong_state(["reopen"])),
    _action("arrive", "arrive", Fresh("accepted"),
        "401 401 200 200 404 200 200 404 404 200 403 200 200 401", to="accepted"),
    _action("resolve", "resolve", Fresh("accepted"),
        "401 401 200 200 404 200 200 404 404 200 403 200 200 401", to="resolved"),
    _action("close satisfied", "close", Fresh("resolved"),
        "401 401 403 403 404 200 200 404 404 200 403 200 200 401", to="closed", satisfaction="satisfied"),
    _action("close basically satisfied G2", "close", Fresh("resolved", grid="G2"),
        "401 401 404 404 403 200 200 404 404 200 403 200 200 401", to="closed",
        satisfaction="basically_satisfied"),
    _action("close without rating", "close", Fresh("resolved"),
        "401 401 403 403 404 409 409 404 404 409 403 409 409 401", check=_needs("satisfaction")),
    _action("close dissatisfied", "close", Fresh("resolved"),
        "401 401 403 403 404 200 200 404 404 200 403 200 200 401", to="dispatched",
        satisfaction="dissatisfied", check=_dissatisfied),
    _action("close when dispatched", "close", G1,
        "401 401 403 403 404 409 409 404 404 409 403 409 409 401", satisfaction="satisfied",
        check=_wrong_state(["accept", "false_alarm"])),
    _action("reopen closed", "reopen", Fresh("closed"),
        "401 401 403 403 404 200 200 404 404 200 403 200 200 401", to="dispatched", check=_reopened),
    _action("reopen false alarm G2", "reopen", Fresh("false_alarm", grid="G2"),
        "401 401 404 404 403 200 200 404 404 200 403 200 200 401", to="dispatched", check=_reopened),
    _action("false alarm", "false_alarm", G1,
        "401 401 200 200 404 200 200 404 404 200 403 200 200 401", to="false_alarm",
        note="wind opened the door"),
    _action("false alarm without reason", "false_alarm", G1,
        "401 401 409 409 404 409 409 404 404 409 403 409 409 401", note="  ", check=_needs("reason")),
    Row("dispatch jobs", "GET", "/api/dispatch/jobs",
        CONTROL_ROOM, check=_jobs),
    Row("dead letters", "GET", "/api/dispatch/dead",
        CONTROL_ROOM, check=_dead),
    Row("dispatch stats", "GET", "/api/dispatch/stats",
        CONTROL_ROOM, check=_stats),
    Row("retry a dead job", "POST", "/api/dispatch/dead/{id}/retry",
        CONTROL_ROOM, target="dead_job", check=_retried),
    Row("retry a delivered job", "POST", "/api/dispatch/dead/{id}/retry",
        "401 401 403 403 403 403 404 403 403 404 403 404 404 401", target="done_job", check=_no_such_job),
    Row("retry no job", "POST", "/api/dispatch/dead/{id}/retry",
        "401 401 403 403 403 403 404 403 403 404 403 404 404 401", target="999999999", check=_no_such_job),
    Row("kpis", "GET", "/api/kpis",
        ALL_OK, check=_kpis),
    Row("alert quality", "GET", "/api/kpis/alerts",
        ALL_OK, check=_alert_quality),
]


# -- the hubs --------------------------------------------------------------------------------------
@dataclass
class World:
    hub: LiveHub
    standing: dict[str, str] = field(default_factory=dict)
    dead_pool: list[int] = field(default_factory=list)
    dead_done_at: dict[int, str] = field(default_factory=dict)
    done_job: int = 0

    def dead_job(self) -> int:
        if not self.dead_pool:
            self.dead_pool.extend(self._make_dead(4))
        return self.dead_pool.pop()

    def _make_dead(self, n: int) -> list[int]:
        """G2 incidents notify w2, whose webhook always fails (max_attempts 1): dead at once."""
        made = [self.hub.open_in_state("dispatched", grid="G2") for _ in range(n)]
        jobs = [self.hub.wait_dead_job(inc_id) for inc_id in made]
        self.dead_done_at.update({j["id"]: j["done_at"] for j in jobs})
        return [j["id"] for j in jobs]


def _world(anonymous: str, dead: int) -> Iterator[World]:
    hook = [{"type": "ws"}, {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/closed"}]
    team = [p if p.id != "w2" else person("w2", ["grid_worker"], ["G2"], channels=hook, token=TOKENS["w2"])
            for p in staff()]
    with running_hub(anonymous=anonymous, team=team, dispatch={"max_attempts": 1}) as hub:
        world = World(hub, {key: hub.open_in_state("dispatched", cls=cls, grid=grid, department=dept)
                            for key, (cls, grid, dept) in STANDING.items()})
        world.dead_pool = world._make_dead(dead)
        deadline = time.monotonic() + 10
        while not (done := hub.call("GET", f"/api/dispatch/jobs?state=done&incident={world.standing['g1']}",
                                    token=TOKENS["op"]).body):
            assert time.monotonic() < deadline, "the hub delivered nothing"
            time.sleep(0.05)
        world.done_job = done[0]["id"]
        yield world


@pytest.fixture(scope="module")
def closed_hub() -> Iterator[World]:
    """``http.anonymous: none``: every request needs a token."""
    yield from _world("none", dead=len(COLUMNS) - 2)


@pytest.fixture(scope="module")
def open_hub() -> Iterator[World]:
    """``http.anonymous: operator``: no token = the control room's operator."""
    yield from _world("operator", dead=2)


def _target(row: Row, world: World) -> str:
    if isinstance(row.target, Fresh):
        f = row.target
        return world.hub.open_in_state(f.state, cls=f.cls, grid=f.grid, department=f.department)
    if row.target == "dead_job":
        return str(world.dead_job())
    if row.target == "done_job":
        return str(world.done_job)
    return world.standing.get(row.target, row.target) if row.target else ""


def _token(column: str) -> str | None:
    name = column.removesuffix("@op")
    return {"anon": None, "bad": BAD_TOKEN}.get(name, TOKENS.get(name))


def _run_cell(row: Row, column: str, world: World, status: int) -> None:
    target = _target(row, world)
    before = world.hub.call("GET", f"/api/incidents/{target}", token=TOKENS["duty"]).body \
        if isinstance(row.target, Fresh) else None
    reply = world.hub.call(row.method, row.path.replace("{id}", target), token=_token(column), body=row.body)
    cell = Cell(column, world, target, reply)
    if reply.status != status:
        raise AssertionError(f"HTTP {reply.status}, expected {status}: {str(reply.body)[:300]}")
    if reply.status >= 400:
        assert set(reply.body) == {"error", "detail"}, reply.body
    if reply.status == 401:
        assert reply.headers.get("WWW-Authenticate") == 'Bearer realm="sanwang-hub"'
    if before is not None:  # an action: applied exactly as told, or not at all
        after = world.hub.call("GET", f"/api/incidents/{target}", token=TOKENS["duty"]).body
        if reply.status == 200:
            assert reply.body["state"] == after["state"] == row.to, (reply.body["state"], after["state"])
            assert row.body is not None
            mine = [h for h in after["history"] if h["actor"] != "system"][-1]
            assert (mine["action"], mine["actor"]) == (row.body["action"], _caller_id(column)), mine
            if row.body["action"] == "accept":
                assert after["assignee"] == _caller_id(column)
        else:
            assert (after["state"], after["history"]) == (before["state"], before["history"]), \
                "refused, yet changed"
    if row.check is not None:
        row.check(cell)


@pytest.mark.parametrize("row", MATRIX, ids=[r.name for r in MATRIX])
def test_matrix(row: Row, closed_hub: World, open_hub: World) -> None:
    failures: list[str] = []
    for column, status in row.expected().items():
        world = open_hub if column.endswith("@op") else closed_hub
        try:
            _run_cell(row, column, world, status)
        except AssertionError as exc:
            failures.append(f"{column}: {exc}")
    assert not failures, f"{row.name} ({row.method} {row.path}):\n" + "\n".join(failures)


def test_anonymous_operator_is_named_by_actor_but_a_token_wins(open_hub: World) -> None:
    hub = open_hub.hub
    inc = hub.open_in_state("dispatched")
    reply = hub.call("POST", f"/api/incidents/{inc}/actions",
                     body={"action": "accept", "actor": "值班员张三"})
    assert reply.status == 200 and reply.body["assignee"] == "值班员张三"
    reply = hub.call("POST", f"/api/incidents/{inc}/actions", token=TOKENS["p1"],
                     body={"action": "resolve", "actor": "someone-else"})
    assert reply.status == 200
    assert [(h["action"], h["actor"]) for h in reply.body["history"][-2:]] == [("accept", "值班员张三"),
                                                                               ("resolve", "p1")]


def test_closed_hub_refuses_an_anonymous_actor(closed_hub: World) -> None:
    inc = closed_hub.hub.open_in_state("dispatched")
    reply = closed_hub.hub.call("POST", f"/api/incidents/{inc}/actions",
                                body={"action": "accept", "actor": "值班员张三"})
    assert reply.status == 401 and reply.body["detail"] == "a bearer token is required"
    after = closed_hub.hub.call("GET", f"/api/incidents/{inc}", token=TOKENS["op"])
    assert after.body["state"] == "dispatched"


def test_w2_never_sees_g1_by_any_filter(closed_hub: World) -> None:
    hub = closed_hub.hub
    for query in ("", "?grid=G1", "?state=dispatched", "?class=professional", "?limit=1000"):
        reply = hub.call("GET", f"/api/incidents{query}", token=TOKENS["w2"])
        assert reply.status == 200 and all(i["grid"] == "G2" for i in reply.body), (query, reply.body)
    assert hub.call("GET", "/api/incidents?grid=G1", token=TOKENS["w2"]).body == []
    assert hub.call("GET", "/api/kpis?grid=G1", token=TOKENS["w2"]).body == []


def test_limit_counts_only_what_the_caller_sees_and_grid_means_its_subtree(closed_hub: World) -> None:
    hub = closed_hub.hub
    mine = hub.open_in_state("dispatched", grid="G1")
    newer = hub.open_in_state("dispatched", grid="G2")  # newer, but not w1's
    reply = hub.call("GET", "/api/incidents?limit=1", token=TOKENS["w1"])
    assert [i["id"] for i in reply.body] == [mine]
    street = hub.call("GET", "/api/incidents?grid=S&limit=1000", token=TOKENS["lead"]).body
    assert {mine, newer} <= {i["id"] for i in street}
    assert {i["grid"] for i in street} == {"G1", "G2"}


def test_the_console_cannot_sign_as_a_person_with_a_token(open_hub: World) -> None:
    inc = open_hub.hub.open_in_state("dispatched")
    reply = open_hub.hub.call("POST", f"/api/incidents/{inc}/actions",
                              body={"action": "accept", "actor": "w1"})
    assert reply.status == 401 and "w1 has an API token" in reply.body["detail"]
    after = open_hub.hub.call("GET", f"/api/incidents/{inc}", token=TOKENS["op"])
    assert after.body["state"] == "dispatched"
