"""The closed loop in one place: every incident transition goes through :class:`IncidentService`.

One transaction per change holds the lifecycle step (:mod:`alerts.lifecycle`), its history row,
the SLA timers it arms or cancels and the notices it queues (the outbox,
:mod:`hub.storage.dispatch`) — so a crash keeps all of them or none. After the commit the
change is published on the bus (``incident_transition`` and ``incident_update``) and the
dispatcher is woken.

Automatic steps: a new or reopened incident is classified and dispatched at once (接收登记 →
梳理分类 → 分流转办), which notifies the level-0 recipients (:meth:`alerts.people.Directory.recipients`)
and arms the accept timer. Timers (:meth:`fire_due`): not accepted in time → supervised and
escalated one level (grid worker → grid leader → duty leader), each level with its own timer;
accepted but not resolved in time (counted from opening) → supervised, overdue, and the level
above is told. Time comes from ``clock`` so tests can move it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts import lifecycle
from alerts.channels.base import Notice
from alerts.classification import stronger
from alerts.people import Caller, Directory
from alerts.settings import DispatchSection
from hub.bus import TOPIC_INCIDENT_UPDATE, TOPIC_TRANSITION, Bus
from hub.errors import IncidentNotFound, InvalidTransition
from hub.storage import Database
from hub.storage import dispatch as jobs_sql
from hub.storage import incidents as inc_sql
from hub.storage.rows import incident_dict

log = logging.getLogger(__name__)

SYSTEM = Caller("system", "sanwang-hub", frozenset({"system"}))

#: Actions after which the MQTT topic of the grid gets the incident's new state.
BROADCAST = frozenset({"dispatch", "accept", "arrive", "resolve", "close", "reopen", "false_alarm",
                       "supervise", "escalate", "upgrade"})


class IncidentService:
    def __init__(self, db: Database, directory: Directory, cfg: DispatchSection, bus: Bus, *,
                 clock: Callable[[], float] = time.time, mqtt: bool = True, settle_s: float = 0.0,
                 on_queued: Callable[[], None] | None = None) -> None:
        self.db = db
        self.directory = directory
        self.cfg = cfg
        self.bus = bus
        self.clock = clock
        self.mqtt = mqtt  # queue an MQTT broadcast per transition
        self.settle_s = settle_s  # delay of the first broadcast (door + person fuse into one message)
        self.on_queued = on_queued
        self.stats = {"transitions": 0, "jobs": 0, "timers_fired": 0}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- opening --------------------------------------------------------------------------------
    async def open(self, *, id: str, kind: str, cls: str, title: str, grid: str | None = None,
                   department: str = "", opened_at: float | None = None, last_seen: float | None = None,
                   sources: Sequence[dict[str, Any]] = (), evidence: Sequence[dict[str, Any]] = (),
                   dedup_keys: Sequence[Sequence[Any]] = (), actor: Caller = SYSTEM, note: str = "",
                   idem_key: str | None = None) -> dict[str, Any] | None:
        """Register, classify and dispatch a new incident; None if ``idem_key`` was used before."""
        published: list[dict[str, Any]] = []
        if opened_at is None:
            opened_at = self.clock()
        async with self.db.pool.connection() as conn, conn.transaction():
            row = await inc_sql.insert(conn, id=id, kind=kind, cls=cls, grid=grid, title=title,
                                       opened_at=opened_at, last_seen=last_seen, sources=sources,
                                       evidence=evidence, department=department, dedup_keys=dedup_keys,
                                       actor=actor.id, note=note, idem_key=idem_key)
            if row is None:
                return None
            await self._auto_dispatch(conn, row, published)
        self._after_commit(published, announce=False)  # the caller announces the new incident
        return await self._get(id)

    async def _auto_dispatch(self, conn: Any, row: dict[str, Any], published: list[dict[str, Any]]) -> None:
        """received → classified → dispatched, notifying level 0 and arming the accept timer."""
        note = row["class"] + (f" · {row['department']}" if row["department"] else "")
        row = await self._step(conn, row, "classify", SYSTEM, note=note, published=published)
        await self._step(conn, row, "dispatch", SYSTEM, published=published)

    # -- people's actions ------------------------------------------------------------------------
    async def act(self, incident_id: str, action: str, caller: Caller, *, note: str = "",
                  satisfaction: str | None = None,
                  attachments: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """Apply a person's action (role, grid scope and state checked); returns the incident."""
        if action not in lifecycle.PEOPLE_ACTIONS:
            raise InvalidTransition(incident_id, "?", action, lifecycle.PEOPLE_ACTIONS)
        published: list[dict[str, Any]] = []
        async with self.db.pool.connection() as conn, conn.transaction():
            row = await inc_sql.lock(conn, incident_id)
            self.directory.check(caller, action, row)
            row = await self._step(conn, row, action, caller, note=note, satisfaction=satisfaction,
                                   attachments=attachments, published=published)
            if row["state"] == "received":  # reopened: through the loop again
                await self._auto_dispatch(conn, row, published)
        self._after_commit(published)
        log.info("incident %s: %s by %s", incident_id, action, caller.id)
        return await self._get(incident_id)

    # -- SLA timers ------------------------------------------------------------------------------
    async def fire_due(self, limit: int = 100) -> int:
        """Fire every timer due by :meth:`now`; returns how many fired."""
        fired = 0
        while fired < limit:
            published: list[dict[str, Any]] = []
            async with self.db.pool.connection() as conn, conn.transaction():
                timer = await jobs_sql.claim_due_timer(conn, self.now())
                if timer is None:
                    break
                row = await inc_sql.lock(conn, timer.incident_id)
                await self._fire(conn, timer, row, published)
            self._after_commit(published)
            fired += 1
        self.stats["timers_fired"] += fired
        return fired

    async def _fire(self, conn: Any, timer: jobs_sql.DueTimer, row: dict[str, Any],
                    published: list[dict[str, Any]]) -> None:
        state, accepted = row["state"], row["accepted_at"] is not None
        if timer.kind == "accept":
            if accepted or state not in lifecycle.OPEN_STATES:
                return  # accepted (or closed) meanwhile: nothing to do
            late = f"not accepted in time (due {timer.due_at.isoformat()})"
            if state != "supervised":
                row = await self._step(conn, row, "supervise", SYSTEM, note=late, published=published)
            if row["level"] < 2:
                await self._step(conn, row, "escalate", SYSTEM, note=late, published=published)
            return
        if state not in lifecycle.OPEN_STATES or row["resolved_at"] is not None:
            return
        late = f"not resolved in time (due {timer.due_at.isoformat()})"
        if state != "supervised":
            row = await self._step(conn, row, "supervise", SYSTEM, note=late, published=published)
        level = min(row["level"] + 1, 2)
        await self._queue(conn, row, "overdue", level, history_id=timer.id, key_prefix="timer", note=late)

    async def next_due_in(self) -> float | None:
        async with self.db.pool.connection() as conn:
            due = await jobs_sql.next_due(conn)
        return None if due is None else max(0.0, (due - self.now()).total_seconds())

    # -- class changes from fusion and repeats ---------------------------------------------------
    async def upgrade(self, incident_id: str, cls: str, note: str) -> dict[str, Any]:
        """Raise the class (never lowers it): history row, new recipients told, SLA re-armed."""
        published: list[dict[str, Any]] = []
        async with self.db.pool.connection() as conn, conn.transaction():
            row = await inc_sql.lock(conn, incident_id)
            if stronger(row["class"], cls) == row["class"]:  # never lowers (nor repeats) the class
                return await self._get(incident_id)
            told = self._recipient_ids(row, row["level"], cls=None)  # under the old class
            await conn.execute("UPDATE incidents SET class = %s WHERE id = %s", (cls, incident_id))
            row["class"] = cls
            hid = await inc_sql.record(conn, incident_id, action="upgrade", from_state=row["state"],
                                       state=row["state"], level=row["level"], at=self.now(), note=note)
            published.append(self._transition(row, "upgrade", SYSTEM, note, hid))
            if row["state"] in lifecycle.OPEN_STATES:
                await self._queue(conn, row, "escalated", row["level"], history_id=hid, note=note,
                                  only_new_from=told)
                await self._arm(conn, row)
        self._after_commit(published, announce=False)  # the engine announces the joined incident
        return await self._get(incident_id)

    # -- internals -------------------------------------------------------------------------------
    async def _step(self, conn: Any, row: dict[str, Any], action: str, caller: Caller, *, note: str = "",
                    satisfaction: str | None = None, attachments: Sequence[dict[str, Any]] = (),
                    published: list[dict[str, Any]]) -> dict[str, Any]:
        snap = lifecycle.Snapshot(row["id"], row["state"], row["accepted_at"] is not None, row["level"])
        step = lifecycle.apply(snap, action, satisfaction=satisfaction, note=note)
        values = dict(step.set_values)
        if action == "accept":
            values["assignee"] = caller.id
        at = self.now()
        hid = await inc_sql.record(conn, row["id"], action=action, from_state=step.from_state,
                                   state=step.state, level=step.level, at=at, actor=caller.id, note=note,
                                   set_now=step.set_now, set_values=values, attachments=attachments)
        self.stats["transitions"] += 1
        row = await inc_sql.lock(conn, row["id"])
        published.append(self._transition(row, action, caller, note, hid))
        await self._timers_after(conn, row, action)
        event = {"dispatch": "assigned", "escalate": "escalated"}.get(action)
        if event is not None:
            await self._queue(conn, row, event, row["level"], history_id=hid, note=note)
        elif action in BROADCAST:
            await self._queue(conn, row, "transition", row["level"], history_id=hid, note=note, people=False)
        return row

    async def _timers_after(self, conn: Any, row: dict[str, Any], action: str) -> None:
        if action == "dispatch":
            await jobs_sql.cancel_timers(conn, row["id"])
            await self._arm(conn, row)
        elif action == "escalate":
            policy = self.cfg.classes[row["class"]]
            if row["level"] < 2:
                every = policy.escalate_every_s or policy.accept_s
                due = self.now() + timedelta(seconds=every)
                await jobs_sql.set_timer(conn, row["id"], "accept", row["level"], due)
            else:
                await jobs_sql.cancel_timers(conn, row["id"], "accept")
        elif action == "accept":
            await jobs_sql.cancel_timers(conn, row["id"], "accept")
            await self._arm(conn, row)
        elif action in ("resolve", "close", "false_alarm", "reopen"):
            await jobs_sql.cancel_timers(conn, row["id"])

    async def _arm(self, conn: Any, row: dict[str, Any]) -> None:
        """Accept timer (from dispatch) until accepted; then the resolve timer (from opening)."""
        policy = self.cfg.classes[row["class"]]
        if row["accepted_at"] is None and row["level"] < 2:
            due = (row["dispatched_at"] or self.now()) + timedelta(seconds=policy.accept_s)
            await jobs_sql.set_timer(conn, row["id"], "accept", row["level"], due)
        if row["resolved_at"] is None:
            await jobs_sql.set_timer(conn, row["id"], "resolve", 0,
                                     row["opened_at"] + timedelta(seconds=policy.resolve_s))

    def _recipient_ids(self, row: dict[str, Any], level: int, cls: str | None) -> set[str]:
        return {p.id for p in self.directory.recipients(grid=row["grid"], cls=cls or row["class"],
                                                         department=row["department"], level=level)}

    async def _queue(self, conn: Any, row: dict[str, Any], event: str, level: int, *, history_id: int,
                     note: str = "", people: bool = True, key_prefix: str = "h",
                     only_new_from: set[str] | None = None) -> None:
        """Queue the notices of one transition: its recipients' channels and the grid's MQTT topic."""
        api = _public(row)
        base: dict[str, Any] = {"event": event, "incident": api, "state": row["state"], "note": note,
                                "at": self.now().isoformat(), "level": level, "url": self._url(row["id"])}
        queue = (row["department"] if row["class"] == "professional" and row["department"]
                 else row["grid"] or "-")
        new: list[jobs_sql.NewJob] = []
        if people:
            for person in self.directory.recipients(grid=row["grid"], cls=row["class"],
                                                    department=row["department"], level=level):
                if only_new_from is not None and person.id in only_new_from:
                    continue
                recipient = {"id": person.id, "name": person.name or person.id, "roles": list(person.roles),
                             "phone": person.phone}
                for index, ch in enumerate(person.channels):
                    key = f"{row['id']}:{key_prefix}{history_id}:{person.id}:{index}"
                    notice = Notice(key=key, recipient=recipient, **base)
                    new.append(jobs_sql.NewJob(key, queue, row["id"],
                                               {"type": ch.type, "person": person.id, "index": index},
                                               notice.to_json()))
        if self.mqtt:
            key = f"{row['id']}:{key_prefix}{history_id}:mqtt"
            delay = self.settle_s if event == "assigned" else 0.0
            new.append(jobs_sql.NewJob(key, queue, row["id"], {"type": "mqtt"},
                                       Notice(key=key, **base).to_json(), delay_s=delay))
        if new:
            self.stats["jobs"] += await jobs_sql.enqueue(conn, new)

    def _url(self, incident_id: str) -> str:
        base = self.cfg.public_url.rstrip("/")
        return f"{base}/#/incidents/{incident_id}" if base else ""

    def _transition(self, row: dict[str, Any], action: str, caller: Caller, note: str,
                    hid: int) -> dict[str, Any]:
        return {"incident_id": row["id"], "history_id": hid, "action": action, "state": row["state"],
                "actor": caller.id, "note": note, "level": row["level"], "at": self.now().isoformat(),
                "incident": _public(row)}

    def _after_commit(self, published: list[dict[str, Any]], *, announce: bool = True) -> None:
        for msg in published:
            self.bus.publish(TOPIC_TRANSITION, msg)
        if published and announce:
            self.bus.publish(TOPIC_INCIDENT_UPDATE, published[-1]["incident"])
        if published and self.on_queued is not None:
            self.on_queued()

    async def _get(self, incident_id: str) -> dict[str, Any]:
        got = await self.db.get_incident(incident_id)
        if got is None:
            raise IncidentNotFound(incident_id)
        return got


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """The API dict (contract v1) of a raw row."""
    return incident_dict(row)
