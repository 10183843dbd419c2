"""The demo's simulated field staff: a patrol member who takes tasks on the phone, and the control
room doing the follow-up visit (回访) — so the demo shows incidents going round the whole loop.

A far-edge simulator: it only uses the hub's public HTTP API with the people's own bearer tokens
(``people: token:``), exactly like the patrol phone page would. It polls the open incidents of its
grids, accepts a new one after ``think_s``, arrives, resolves with a note, and the operator then
closes it with a satisfaction rating. Every ``skip_every``-th task is left alone so the SLA timers
escalate it (grid leader, then duty leader) for everyone to see.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

NOTES = ("已到现场，系住户忘带钥匙，已协助开门 Resident without keys, helped",
         "现场巡查无异常 Checked, all clear",
         "门锁故障，已通知物业维修 Lock fault, property manager notified")


class DemoPatrol:
    def __init__(self, base_url: str, patrol_token: str, operator_token: str | None = None, *,
                 think_s: float = 6.0, skip_every: int = 3, poll_s: float = 2.0,
                 seed: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.patrol_token = patrol_token
        self.operator_token = operator_token
        self.think_s = think_s
        self.skip_every = skip_every
        self.poll_s = poll_s
        self.rng = random.Random(seed)
        self.seen: set[str] = set()
        self.handled = 0
        self.closed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    await self._round(http)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.debug("demo patrol: %s", exc)
                await asyncio.sleep(self.poll_s)

    async def _round(self, http: aiohttp.ClientSession) -> None:
        tasks = await self._get(http, "/api/incidents?limit=50", self.patrol_token)
        for inc in sorted(tasks, key=lambda i: i["opened_at"]):
            if inc["id"] in self.seen or inc["state"] not in ("dispatched", "supervised"):
                continue
            if inc["state"] == "supervised" and inc.get("accepted_at"):
                continue
            self.seen.add(inc["id"])
            if self.skip_every and len(self.seen) % self.skip_every == 0:
                log.info("demo patrol leaves %s alone (watch it escalate)", inc["id"])
                continue
            task = asyncio.create_task(self._handle(inc["id"]), name=f"patrol-{inc['id']}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, incident_id: str) -> None:
        async with aiohttp.ClientSession() as http:
            steps: list[tuple[str, str, dict[str, Any]]] = [
                (self.patrol_token, "accept", {"note": "巡防队已接单 On my way"}),
                (self.patrol_token, "arrive", {"note": "已到达现场 On site"}),
                (self.patrol_token, "resolve", {"note": self.rng.choice(NOTES)}),
            ]
            if self.operator_token:
                rating = self.rng.choice(("satisfied", "satisfied", "basically_satisfied"))
                steps.append((self.operator_token, "close", {"note": "回访完成 Follow-up done",
                                                            "satisfaction": rating}))
            for token, action, body in steps:
                await asyncio.sleep(self.think_s * (0.5 + self.rng.random()))
                async with http.post(f"{self.base_url}/api/incidents/{incident_id}/actions",
                                     json={"action": action, **body},
                                     headers={"Authorization": f"Bearer {token}"}) as resp:
                    if resp.status != 200:
                        log.info("demo patrol: %s on %s refused (%s)", action, incident_id, resp.status)
                        return
            self.handled += 1
            self.closed += 1 if self.operator_token else 0

    async def _get(self, http: aiohttp.ClientSession, path: str, token: str) -> list[dict[str, Any]]:
        async with http.get(self.base_url + path, headers={"Authorization": f"Bearer {token}"}) as resp:
            resp.raise_for_status()
            data: list[dict[str, Any]] = await resp.json()
            return data
