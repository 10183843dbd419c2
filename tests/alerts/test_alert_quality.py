"""Alert quality from the closed loop's own records: false alarms per kind and source, with reasons,
on the real PostgreSQL; incidents go through the real service (false_alarm with a reason, reopen)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.alert_quality import alert_quality
from tests.alerts.loop_support import T0, Clock, caller, loop_service
from tests.support import pg

pg_url = pg.pg_url

SINCE = datetime.fromtimestamp(T0 - 60, UTC)
UNTIL = datetime.fromtimestamp(T0 + 3600, UTC)


def cam(camera: str) -> list[dict[str, str]]:
    return [{"type": "camera", "id": camera, "rule": "intrusion"}]


async def test_false_alarms_per_kind_and_source_with_reasons(pg_url: str) -> None:
    clock = Clock()
    async with loop_service(pg_url, clock=clock) as (svc, db, _bus):
        w1, w2, op = caller(svc.directory, "w1"), caller(svc.directory, "w2"), caller(svc.directory, "op")
        # cam-a (G1): four intrusions, three false alarms (shadow twice, a cat once), one real
        for i, reason in enumerate(["树影 shadow", "猫 cat", "树影 shadow", None]):
            await svc.open(id=f"a{i}", kind="intrusion", cls="general", title="入侵", grid="G1",
                           sources=cam("cam-a"))
            if reason is not None:
                await svc.act(f"a{i}", "false_alarm", w1, note=reason)
            clock.advance(10)
        # cam-b (G2): one false alarm that was reopened (no longer counted; its reason still listed)
        await svc.open(id="b0", kind="intrusion", cls="general", title="入侵", grid="G2",
                       sources=cam("cam-b"))
        await svc.act("b0", "false_alarm", w2, note="风吹 wind")
        await svc.act("b0", "reopen", op, note="it was a person after all")
        # a door in G1: one real incident
        await svc.open(id="d0", kind="door_forced", cls="professional", department="公安", title="门",
                       grid="G1", sources=[{"type": "device", "id": "door-1", "kind": "door_forced"}])
        # outside the period
        clock.advance(7200)
        await svc.open(id="late", kind="intrusion", cls="general", title="入侵", grid="G1",
                       sources=cam("cam-a"))
        await svc.act("late", "false_alarm", w1, note="树影 shadow")

        async with db.pool.connection() as conn:
            rows = await alert_quality(conn, since=SINCE, until=UNTIL)
            g2 = await alert_quality(conn, since=SINCE, until=UNTIL, grids=["G2"])
            empty = await alert_quality(conn, since=UNTIL, until=UNTIL + timedelta(days=1), grids=[])
            with pytest.raises(ValueError, match="timezone-aware"):
                await alert_quality(conn, since=SINCE.replace(tzinfo=None), until=UNTIL)

    by_source = {(r["kind"], r["source_id"]): r for r in rows}
    # noisiest first: most false alarms, then most incidents, then kind and source
    assert list(by_source) == [("intrusion", "cam-a"), ("door_forced", "door-1"), ("intrusion", "cam-b")]
    a = by_source["intrusion", "cam-a"]
    assert (a["source_type"], a["incidents"], a["false_alarms"]) == ("camera", 4, 3)
    assert a["false_alarm_rate"] == pytest.approx(0.75)
    assert a["reasons"] == [{"reason": "树影 shadow", "count": 2}, {"reason": "猫 cat", "count": 1}]
    b = by_source["intrusion", "cam-b"]
    assert (b["incidents"], b["false_alarms"], b["false_alarm_rate"]) == (1, 0, 0.0)
    assert b["reasons"] == [{"reason": "风吹 wind", "count": 1}]
    d = by_source["door_forced", "door-1"]
    assert (d["source_type"], d["incidents"], d["false_alarms"], d["reasons"]) == ("device", 1, 0, [])
    assert [(r["kind"], r["source_id"]) for r in g2] == [("intrusion", "cam-b")]
    assert empty == []
