"""``POST /api/incidents`` over real HTTP against the real runtime (RuntimeView, IncidentService, real
PostgreSQL): a hand report is stored, classified, dispatched and announced; retries with one
Idempotency-Key (also concurrent ones) open one incident; roles and grids are enforced."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from detectors.backends.base import DetectorBackend
from tests.hub import runtime_support
from tests.hub.runtime_support import Runtime, auth, runtime
from tests.support import pg

pg_url = pg.pg_url
backend = runtime_support.backend
state_dir = pg.state_dir

CALL = {"kind": "report", "title": "居民来电：楼道堆放杂物", "grid": "G1"}


@pytest.fixture
async def hub(pg_url: str, state_dir: Path, backend: DetectorBackend) -> Any:
    async with runtime(pg_url, state_dir, backend) as rt:
        yield rt


async def _jobs(hub: Runtime, incident_id: str) -> list[tuple[str, str | None]]:
    rows = await hub.rows("SELECT notice->>'event', channel->>'person' FROM dispatch_jobs "
                          "WHERE incident_id = %s ORDER BY id", incident_id)
    return [(str(event), person) for event, person in rows]


async def test_report_opens_a_dispatched_incident(hub: Runtime) -> None:
    ws = await hub.client.ws_connect("/ws/events")
    body = {**CALL, "note": "3号楼2单元，住户王女士来电", "location": [113.264, 23.129],
            "attachments": [{"kind": "photo", "url": "/evidence/call-1.jpg"}]}
    r = await hub.client.post("/api/incidents", json=body, headers=auth("w1"))
    assert r.status == 201, await r.text()
    made = await r.json()
    assert r.headers["Location"] == f"/api/incidents/{made['id']}"
    assert (made["kind"], made["title"], made["grid"]) == ("report", CALL["title"], "G1")
    assert (made["class"], made["state"], made["department"]) == ("general", "dispatched", "")  # rule "*"
    assert made["sources"] == [{"type": "manual", "id": "w1", "name": "w1", "at": made["sources"][0]["at"],
                                "location": [113.264, 23.129]}]
    assert [(e["kind"], e["url"]) for e in made["evidence"]] == [("photo", "/evidence/call-1.jpg")]
    steps = [(h["action"], h["state"], h["actor"]) for h in made["history"]]
    assert steps == [("open", "received", "w1"), ("classify", "classified", "system"),
                     ("dispatch", "dispatched", "system")]
    assert made["history"][0]["note"] == body["note"]

    # stored: the API reads it back from PostgreSQL, the accept and resolve timers are armed
    got = await (await hub.client.get(f"/api/incidents/{made['id']}", headers=auth("w1"))).json()
    assert got == made
    timers = await hub.rows("SELECT kind FROM sla_timers WHERE incident_id = %s AND NOT cancelled "
                            "ORDER BY kind", made["id"])
    assert [t[0] for t in timers] == ["accept", "resolve"]
    assert made["accept_due"] and made["resolve_due"]
    # notices queued for the grid's own worker and patrol (即采即办) and the grid's MQTT topic
    assert sorted(await _jobs(hub, made["id"]), key=str) == sorted(
        [("assigned", "w1"), ("assigned", "p1"), ("assigned", None)], key=str)

    # announced like an alert engine's incident: the dashboard's WebSocket gets it
    async with asyncio.timeout(3):
        while True:
            msg = json.loads((await ws.receive()).data)
            if msg["type"] == "incident" and msg["data"]["id"] == made["id"]:
                break
    assert msg["data"]["state"] == "dispatched"
    assert "history" not in msg["data"]
    await ws.close()


async def test_class_and_department_from_rules_or_chosen(hub: Runtime) -> None:
    r = await hub.client.post("/api/incidents", headers=auth("p1"),
                              json={"kind": "fire_hazard", "title": "巡逻发现：消防通道被占", "grid": "G1"})
    assert r.status == 201
    made = await r.json()
    assert (made["class"], made["department"]) == ("professional", "消防")  # dispatch.rules
    assert await _jobs(hub, made["id"]) in ([("assigned", "fire"), ("assigned", None)],
                                            [("assigned", None), ("assigned", "fire")])
    r = await hub.client.post("/api/incidents", headers=auth("p1"),
                              json={"kind": "fire_hazard", "title": "电动车楼道充电起火", "grid": "G1",
                                    "class": "emergency"})
    made = await r.json()
    assert (made["class"], made["department"]) == ("emergency", "消防")  # the reporter's class wins
    told = {person for _, person in await _jobs(hub, made["id"])}
    assert told == {"w1", "p1", "fire", "duty", None}  # 应急: handlers, department and the duty leader


async def test_same_idempotency_key_opens_one_incident(hub: Runtime) -> None:
    key = {"Idempotency-Key": "call-20260101-0007"}
    first = await hub.client.post("/api/incidents", json=CALL, headers={**auth("w1"), **key})
    again = await hub.client.post("/api/incidents", json=CALL, headers={**auth("w1"), **key})
    assert (first.status, again.status) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["id"] == (await first.json())["id"]
    assert await hub.count_incidents() == 1
    # the key belongs to its reporter: another person's identical key is another report
    other = await hub.client.post("/api/incidents", json=CALL, headers={**auth("p1"), **key})
    assert other.status == 201
    # the same key for a different report is refused, nothing opened
    changed = await hub.client.post("/api/incidents", json={**CALL, "title": "另一件事"},
                                    headers={**auth("w1"), **key})
    assert changed.status == 422
    assert (await changed.json())["detail"]["id"] == (await first.json())["id"]
    assert await hub.count_incidents() == 2


@pytest.mark.parametrize("attempts", [2, 6])
async def test_concurrent_retries_open_one_incident(hub: Runtime, attempts: int) -> None:
    headers = {**auth("w1"), "Idempotency-Key": f"race-{attempts}"}
    answers = await asyncio.gather(*(hub.client.post("/api/incidents", json=CALL, headers=headers)
                                     for _ in range(attempts)))
    assert sorted(r.status for r in answers) == [200] * (attempts - 1) + [201]
    ids = {(await r.json())["id"] for r in answers}
    assert len(ids) == 1
    assert await hub.count_incidents() == 1
    (incident_id,) = ids
    assert len(await _jobs(hub, incident_id)) == 3  # dispatched once: w1, p1, MQTT


async def test_grid_scope_and_roles(hub: Runtime) -> None:
    r = await hub.client.post("/api/incidents", json={**CALL, "grid": "G2"}, headers=auth("w1"))
    assert r.status == 403
    assert "outside the grids" in (await r.json())["detail"]["reason"]
    for who in ("cop", "fitter"):  # a department member, an integrator
        r = await hub.client.post("/api/incidents", json=CALL, headers=auth(who))
        assert r.status == 403, who
        assert "may not report" in (await r.json())["detail"]["reason"]
    r = await hub.client.post("/api/incidents", json={**CALL, "grid": "G9"}, headers=auth("op"))
    assert r.status == 400
    assert (await r.json())["detail"]["known"] == ["D", "G1", "G2", "S"]
    r = await hub.client.post("/api/incidents", json=CALL, headers={"Authorization": "Bearer wrong"})
    assert r.status == 401
    assert await hub.count_incidents() == 0
    # the grid leader of the street reports in any grid below it; so does the control room
    r = await hub.client.post("/api/incidents", json={**CALL, "grid": "G2"}, headers=auth("lead"))
    assert r.status == 201
    assert (await r.json())["history"][0]["actor"] == "lead"


async def test_control_room_without_token_names_the_operator(hub: Runtime) -> None:
    r = await hub.client.post("/api/incidents", json={**CALL, "actor": "值班员 李"})
    assert r.status == 201
    made = await r.json()
    assert made["history"][0]["actor"] == "值班员 李"
    assert made["sources"][0]["id"] == "值班员 李"


@pytest.mark.parametrize("body", [
    {**CALL, "kind": "Fire!"}, {**CALL, "title": ""}, {**CALL, "title": "长" * 201},
    {"kind": "report", "title": "x"}, {**CALL, "class": "urgent"}, {**CALL, "location": [113.2, 95]},
    {**CALL, "attachments": [{"url": "/evidence/../hub.yaml"}]}, {**CALL, "extra": 1},
])
async def test_bad_bodies_store_nothing(hub: Runtime, body: dict[str, Any]) -> None:
    r = await hub.client.post("/api/incidents", json=body, headers=auth("w1"))
    assert r.status == 400
    assert (await r.json())["error"]
    assert await hub.count_incidents() == 0
