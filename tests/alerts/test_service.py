"""The closed loop through IncidentService on the real PostgreSQL: dispatch, actions, timers."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from alerts.people import CONTROL_ROOM
from hub.errors import Forbidden, IncidentNotFound, InvalidTransition
from tests.alerts.loop_support import Clock, caller, loop_service
from tests.support import pg

pg_url = pg.pg_url


async def jobs(db: Any, incident_id: str) -> list[tuple[str, str]]:
    async with db.pool.connection() as conn:
        cur = await conn.execute("SELECT notice->>'event', channel->>'person' FROM dispatch_jobs "
                                 "WHERE incident_id = %s ORDER BY id", (incident_id,))
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def test_open_classifies_dispatches_and_notifies_level_zero(pg_url: str) -> None:
    async with loop_service(pg_url) as (svc, db, _bus):
        inc = await svc.open(id="i1", kind="intrusion", cls="general", title="入侵", grid="G1")
        assert inc is not None
        assert inc["state"] == "dispatched"
        assert [h["action"] for h in inc["history"]] == ["open", "classify", "dispatch"]
        assert [h["state"] for h in inc["history"]] == ["received", "classified", "dispatched"]
        assert inc["accept_due"] is not None and inc["resolve_due"] is not None
        assert await jobs(db, "i1") == [("assigned", "w1"), ("assigned", "p1")]


async def test_professional_goes_to_department_emergency_also_to_duty_leader(pg_url: str) -> None:
    async with loop_service(pg_url) as (svc, db, _bus):
        await svc.open(id="p", kind="door_forced", cls="professional", department="公安", title="x",
                       grid="G1")
        assert await jobs(db, "p") == [("assigned", "cop")]
        await svc.open(id="e", kind="door_forced", cls="emergency", department="公安", title="x", grid="G2")
        assert sorted(p for _, p in await jobs(db, "e")) == ["cop", "duty", "w2"]


async def test_people_move_it_through_the_loop_with_roles_and_grids(pg_url: str) -> None:
    async with loop_service(pg_url) as (svc, _db, _bus):
        d = svc.directory
        await svc.open(id="i", kind="intrusion", cls="general", title="x", grid="G1")
        with pytest.raises(Forbidden, match="outside the grids"):
            await svc.act("i", "accept", caller(d, "w2"))
        with pytest.raises(Forbidden, match="may not 'close'"):
            await svc.act("i", "close", caller(d, "w1"), satisfaction="satisfied")
        with pytest.raises(InvalidTransition):
            await svc.act("i", "resolve", caller(d, "w1"))
        got = await svc.act("i", "accept", caller(d, "p1"), note="on my way")
        assert got["state"] == "accepted" and got["assignee"] == "p1" and got["accept_due"] is None
        got = await svc.act("i", "arrive", caller(d, "p1"))
        assert got["state"] == "accepted" and got["arrived_at"] is not None
        got = await svc.act("i", "resolve", caller(d, "p1"), note="nobody there",
                            attachments=[{"kind": "photo", "url": "/evidence/x.jpg"}])
        assert got["state"] == "resolved" and got["history"][-1]["attachments"][0]["kind"] == "photo"
        with pytest.raises(InvalidTransition, match="satisfaction"):
            await svc.act("i", "close", CONTROL_ROOM)
        got = await svc.act("i", "close", CONTROL_ROOM, satisfaction="dissatisfied", note="回访不满意")
        assert got["state"] == "dispatched" and got["accepted_at"] is None
        await svc.act("i", "accept", caller(d, "w1"))
        await svc.act("i", "resolve", caller(d, "w1"))
        got = await svc.act("i", "close", caller(d, "lead"), satisfaction="satisfied")
        assert got["state"] == "closed" and got["satisfaction"] == "satisfied"
        got = await svc.act("i", "reopen", CONTROL_ROOM, note="again")
        assert got["state"] == "dispatched"
        assert [h["action"] for h in got["history"]][-3:] == ["reopen", "classify", "dispatch"]


async def test_accept_timer_escalates_level_by_level_and_survives_a_restart(pg_url: str) -> None:
    clock = Clock()
    async with loop_service(pg_url, clock=clock) as (svc, db, _bus):
        await svc.open(id="i", kind="intrusion", cls="general", title="x", grid="G1")
        clock.advance(599)
        assert await svc.fire_due() == 0
    # a new service (a restarted hub) over the same database fires the timer armed by the first
    async with loop_service(pg_url, clock=clock) as (svc, db, _bus):
        clock.advance(2)
        assert await svc.fire_due() == 1
        got = await svc._get("i")
        assert got["state"] == "supervised" and got["level"] == 1 and got["overdue"]
        assert ("escalated", "lead") in await jobs(db, "i")
        clock.advance(600)
        assert await svc.fire_due() == 1
        got = await svc._get("i")
        assert got["level"] == 2
        assert ("escalated", "duty") in await jobs(db, "i")
        clock.advance(4 * 3600)
        assert await svc.fire_due() == 1  # the resolve timer: overdue, nobody above the duty leader
        assert (await svc._get("i"))["level"] == 2
        got = await svc.act("i", "accept", caller(svc.directory, "w1"))
        assert got["state"] == "accepted"


async def test_resolve_timer_supervises_and_tells_the_level_above(pg_url: str) -> None:
    clock = Clock()
    async with loop_service(pg_url, clock=clock) as (svc, db, _bus):
        await svc.open(id="i", kind="intrusion", cls="general", title="x", grid="G1")
        clock.advance(60)
        await svc.act("i", "accept", caller(svc.directory, "w1"))
        clock.advance(4 * 3600)
        assert await svc.fire_due() == 1
        got = await svc._get("i")
        assert got["state"] == "supervised" and got["overdue"] and got["level"] == 0
        assert ("overdue", "lead") in await jobs(db, "i")
        got = await svc.act("i", "resolve", caller(svc.directory, "w1"))
        assert got["state"] == "resolved" and got["resolve_due"] is None


async def test_idempotent_open_and_one_job_per_key(pg_url: str) -> None:
    async with loop_service(pg_url) as (svc, db, _bus):
        assert await svc.open(id="a", kind="report", cls="general", title="x", grid="G1", idem_key="k1")
        again = await svc.open(id="b", kind="report", cls="general", title="x", grid="G1", idem_key="k1")
        assert again is None
        async with db.pool.connection() as conn:
            with pytest.raises(psycopg.errors.UniqueViolation):
                await conn.execute("INSERT INTO dispatch_jobs (key, queue, incident_id, channel, notice) "
                                   "SELECT key, queue, incident_id, channel, notice FROM dispatch_jobs "
                                   "LIMIT 1")


async def test_illegal_actions_change_nothing_and_say_what_is_allowed(pg_url: str) -> None:
    async with loop_service(pg_url) as (svc, _db, _bus):
        await svc.open(id="i", kind="intrusion", cls="general", title="x", grid="G1")
        await svc.act("i", "false_alarm", CONTROL_ROOM, note="a cat")
        with pytest.raises(InvalidTransition) as err:
            await svc.act("i", "resolve", CONTROL_ROOM)
        assert err.value.state == "false_alarm" and err.value.allowed == ("reopen",)
        with pytest.raises(InvalidTransition):
            await svc.act("i", "explode", CONTROL_ROOM)
        await svc.act("i", "reopen", CONTROL_ROOM)
        with pytest.raises(InvalidTransition, match="reason"):
            await svc.act("i", "false_alarm", CONTROL_ROOM)
        with pytest.raises(IncidentNotFound):
            await svc.act("nope", "accept", CONTROL_ROOM)
        got = await svc._get("i")
        assert got["state"] == "dispatched"
        assert got["history"][-1]["actor"] == "system"


async def test_upgrade_tells_only_the_people_the_new_class_adds(pg_url: str) -> None:
    async with loop_service(pg_url) as (svc, db, _bus):
        await svc.open(id="i", kind="door_forced", cls="general", department="公安", title="x", grid="G1")
        got = await svc.upgrade("i", "emergency", "fused: person on the door camera")
        assert got["class"] == "emergency" and got["history"][-1]["action"] == "upgrade"
        assert await jobs(db, "i") == [("assigned", "w1"), ("assigned", "p1"), ("escalated", "cop"),
                                       ("escalated", "duty")]
        got = await svc.upgrade("i", "professional", "never lowers")
        assert got["class"] == "emergency"
