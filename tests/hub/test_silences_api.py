"""``/api/silences`` over real HTTP against the real runtime: a silence added through the API holds the
alert engine's next matching alert at once (the engine and the view share one ``Silences``), lifting it
lets the next one open an incident; roles, grids and config silences are enforced."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.settings import SilenceConfig
from detectors.backends.base import DetectorBackend
from hub.events import SourceEvent
from tests.hub import runtime_support
from tests.hub.runtime_support import Runtime, auth, runtime
from tests.support import pg

pg_url = pg.pg_url
backend = runtime_support.backend
state_dir = pg.state_dir

CONFIGURED = SilenceConfig(source="door2", kinds=["door_held_open"], ends=datetime(2099, 1, 1, tzinfo=UTC),
                           reason="门磁更换 sensor replacement")


@pytest.fixture
async def hub(pg_url: str, state_dir: Path, backend: DetectorBackend) -> Any:
    async with runtime(pg_url, state_dir, backend, silences=[CONFIGURED]) as rt:
        yield rt


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def alert(hub: Runtime, device: str, kind: str) -> None:
    """A sensor event as the MQTT adapters publish it, handled by the real alert engine."""
    await hub.engine.handle_source_event(SourceEvent(device, kind, at=time.time()))  # type: ignore[arg-type]


async def incidents(hub: Runtime) -> list[tuple[str, str | None]]:
    rows = await hub.rows("SELECT kind, grid FROM incidents ORDER BY opened_at, id")
    return [(str(k), g) for k, g in rows]


async def test_api_silence_holds_alerts_at_once_and_lifting_it_lets_them_through(hub: Runtime) -> None:
    await alert(hub, "door1", "tamper")  # the engine has read the silences (cache warm, 10 s refresh)
    assert await incidents(hub) == [("tamper", "G1")]

    r = await hub.client.post("/api/silences", headers=auth("op"), json={
        "grid": "G1", "kinds": ["door_forced"], "ends": later(hours=2), "reason": "门禁改造 access works"})
    assert r.status == 201, await r.text()
    made = await r.json()
    assert r.headers["Location"] == f"/api/silences/{made['id']}"
    assert (made["grid"], made["source"], made["kinds"], made["created_by"], made["active"]) == (
        "G1", None, ["door_forced"], "op", True)

    await alert(hub, "door1", "door_forced")  # silenced: stored as an alert, no incident
    await alert(hub, "door2", "door_forced")  # another grid: opens one
    assert await incidents(hub) == [("tamper", "G1"), ("door_forced", "G2")]
    assert hub.engine.stats["silenced"] == 1
    assert await hub.view.silence_admin.silences.match(grid="G1", source="door1", kind="door_forced",
                                                       at=time.time()) is not None

    listed = await (await hub.client.get("/api/silences", headers=auth("op"))).json()
    assert [s["id"] for s in listed] == ["config:0", made["id"]]
    assert listed[0]["created_by"] == "config"

    r = await hub.client.delete(f"/api/silences/{made['id']}", headers=auth("op"))
    assert r.status == 204
    await alert(hub, "door1", "door_forced")
    assert await incidents(hub) == [("tamper", "G1"), ("door_forced", "G2"), ("door_forced", "G1")]
    assert hub.engine.stats["silenced"] == 1
    assert [s["id"] for s in await (await hub.client.get("/api/silences")).json()] == ["config:0"]
    await hub.db.flush()
    held = await hub.rows("SELECT incident_id, data->'silenced'->>'id' FROM alerts "
                          "WHERE kind = 'door_forced' AND source_id = 'door1' ORDER BY at")
    assert [(i is None, s) for i, s in held] == [(True, str(made["id"])), (False, None)]


async def test_a_silence_that_starts_later_is_listed_and_does_not_hold_yet(hub: Runtime) -> None:
    r = await hub.client.post("/api/silences", headers=auth("root"), json={
        "source": "door1", "starts": later(hours=1), "ends": later(hours=3), "reason": "夜间施工"})
    assert r.status == 201
    assert (await r.json())["active"] is False
    listed = await (await hub.client.get("/api/silences", headers=auth("root"))).json()
    assert [(s["source"], s["active"]) for s in listed] == [("door2", True), ("door1", False)]
    await alert(hub, "door1", "door_forced")
    assert await incidents(hub) == [("door_forced", "G1")]


async def test_who_may_silence(hub: Runtime) -> None:
    body = {"grid": "G1", "ends": later(hours=1), "reason": "检修"}
    for who in ("p1", "w1", "cop", "duty", "fitter"):  # patrol, worker, department, duty leader, integrator
        r = await hub.client.post("/api/silences", json=body, headers=auth(who))
        assert r.status == 403, who
    # a grid leader: the grids they lead and below, by grid or by the source's grid
    assert (await hub.client.post("/api/silences", json=body, headers=auth("lead2"))).status == 403
    r = await hub.client.post("/api/silences", json={**body, "source": "door1", "grid": None},
                              headers=auth("lead2"))
    assert r.status == 403
    mine = await hub.client.post("/api/silences", json={**body, "grid": "G2"}, headers=auth("lead2"))
    assert mine.status == 201
    by_op = await hub.client.post("/api/silences", json=body, headers=auth("op"))
    assert by_op.status == 201
    op_id, lead2_id = (await by_op.json())["id"], (await mine.json())["id"]
    assert (await hub.client.delete(f"/api/silences/{op_id}", headers=auth("lead2"))).status == 403
    assert (await hub.client.delete(f"/api/silences/{lead2_id}", headers=auth("p1"))).status == 403
    # the street's leader covers G2 too
    assert (await hub.client.delete(f"/api/silences/{lead2_id}", headers=auth("lead"))).status == 204
    # a worker of G2 sees the config silence on door2 (G2), not the operator's one on G1
    seen = await (await hub.client.get("/api/silences", headers=auth("w2"))).json()
    assert [s["id"] for s in seen] == ["config:0"]
    assert (await hub.client.get("/api/silences", headers={"Authorization": "Bearer nope"})).status == 401


async def test_config_silences_are_read_only_and_unknown_ids_404(hub: Runtime) -> None:
    r = await hub.client.delete("/api/silences/config:0", headers=auth("op"))
    assert r.status == 409
    assert "config" in (await r.json())["error"]
    for missing in ("config:1", "12345", "x"):
        assert (await hub.client.delete(f"/api/silences/{missing}", headers=auth("op"))).status == 404
    assert [s["id"] for s in await (await hub.client.get("/api/silences")).json()] == ["config:0"]


@pytest.mark.parametrize("body", [
    {"grid": "G9", "ends": "+1h", "reason": "x"},  # unknown grid
    {"grid": "G1", "source": "door1", "ends": "+1h", "reason": "x"},
    {"grid": "G1", "ends": "-1h", "reason": "x"},
    {"grid": "G1", "ends": "+31d", "reason": "x"},
    {"grid": "G1", "starts": "+2h", "ends": "+1h", "reason": "x"},
    {"grid": "G1", "ends": "+1h", "reason": ""},
    {"grid": "G1", "ends": "+1h", "reason": "x", "kinds": [""]},
])
async def test_bad_silences_are_400_and_store_nothing(hub: Runtime, body: dict[str, Any]) -> None:
    units = {"h": "hours", "d": "days"}
    for name in ("starts", "ends"):
        if isinstance(body.get(name), str) and body[name][0] in "+-":
            text = body[name]
            body[name] = later(**{units[text[-1]]: float(text[:-1])})
    r = await hub.client.post("/api/silences", json=body, headers=auth("op"))
    assert r.status == 400, await r.text()
    assert (await hub.rows("SELECT count(*) FROM silences"))[0][0] == 0
