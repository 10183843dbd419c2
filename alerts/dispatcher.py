"""Delivery workers: lease jobs from the durable queue, send them on their channel, record the outcome.

A job names its channel (``{"type": "mqtt"}`` for the grid's MQTT topic, or ``{"type": "webhook",
"person": "p1", "index": 0}`` for the first channel of person ``p1`` in the config).
:class:`ChannelSet` turns that into a live :class:`~alerts.channels.base.Channel`, created once and
reused. Failures are retried with jittered exponential backoff (``retry_base_s`` doubling up to
``retry_max_s``, or the peer's ``Retry-After``); after ``max_attempts`` — or at once when the error
cannot be fixed by retrying — the job goes to the dead-letter list (``GET /api/dispatch/dead``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from alerts.channels.base import Channel, Notice
from alerts.channels.http import make_http_channel
from alerts.channels.ws import WsChannel
from alerts.queue import JobQueue
from alerts.settings import DispatchSection, PersonConfig
from hub.errors import DeliveryError, HubError
from hub.metrics import Metrics
from hub.storage.dispatch import Job

log = logging.getLogger(__name__)


class ChannelSet:
    """Live channels by job spec; built lazily from the people in the config."""

    def __init__(self, people: list[PersonConfig], *, ws: WsChannel | None = None,
                 mqtt: Channel | None = None, timeout_s: float = 10.0) -> None:
        self.people = {p.id: p for p in people}
        self.ws = ws
        self.mqtt = mqtt
        self.timeout_s = timeout_s
        self._made: dict[tuple[str, int], Channel] = {}

    def get(self, spec: dict[str, Any]) -> Channel:
        kind = spec.get("type")
        if kind == "mqtt" and spec.get("person") is None:
            if self.mqtt is None:
                raise DeliveryError("no MQTT connection configured", retryable=False)
            return self.mqtt
        person = self.people.get(str(spec.get("person")))
        index = int(spec.get("index", -1))
        if person is None or not 0 <= index < len(person.channels):
            raise DeliveryError(f"channel {spec} is no longer in the config", retryable=False)
        cfg = person.channels[index]
        if cfg.type != kind:
            raise DeliveryError(f"channel {spec} changed type in the config (now {cfg.type})",
                                retryable=False)
        if cfg.type == "ws":
            if self.ws is None:
                raise DeliveryError("no WebSocket endpoint", retryable=False)
            return self.ws
        if cfg.type == "mqtt":
            if self.mqtt is None:
                raise DeliveryError("no MQTT connection configured", retryable=False)
            return self.mqtt
        made = self._made.get((person.id, index))
        if made is None:
            assert cfg.url is not None  # ChannelConfig validates it
            secret = cfg.secret.get_secret_value() if cfg.secret is not None else None
            made = make_http_channel(cfg.type, cfg.url, secret, timeout_s=self.timeout_s,
                                     name=f"{person.id}#{index}")
            self._made[(person.id, index)] = made
        return made

    async def close(self) -> None:
        for channel in self._made.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self._made.clear()


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): base·2^(attempt-1), capped, ±20 % jitter."""
    delay = min(max_s, base_s * 2.0 ** max(0, attempt - 1))
    r = rng.random() if rng is not None else random.random()
    return delay * (0.8 + 0.4 * r)


class Dispatcher:
    def __init__(self, queue: JobQueue, channels: ChannelSet, cfg: DispatchSection,
                 metrics: Metrics | None = None, *, poll_s: float = 0.5,
                 refresh: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None) -> None:
        self.queue = queue
        # broadcast (MQTT) notices carry the incident as it is when sent, not as it was when queued
        self.refresh = refresh
        self.channels = channels
        self.cfg = cfg
        self.metrics = metrics
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"delivered": 0, "retried": 0, "dead": 0}

    def wake(self) -> None:
        """New jobs were committed: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        await self.queue.start()
        try:
            while True:
                free = self.cfg.workers - len(self._tasks)
                try:
                    jobs = await self.queue.lease(free) if free > 0 else []
                except Exception as exc:  # a database or broker blip: keep going, the jobs are durable
                    log.warning("leasing deliveries failed (%s: %s); retrying", type(exc).__name__, exc)
                    jobs = []
                for job in jobs:
                    task = asyncio.create_task(self._deliver(job), name=f"deliver-{job.id}")
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
                if not jobs:  # nothing ready (or every worker busy): wait for a commit or the poll
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_s)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.channels.close()
            await self.queue.close()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a worker is free

    async def _deliver(self, job: Job) -> None:
        try:
            await self._attempt(job)
        except Exception:  # a broken job must not kill the dispatcher
            log.exception("delivery of job %s failed unexpectedly", job.id)

    async def _attempt(self, job: Job) -> None:
        kind = str(job.channel.get("type"))
        try:
            channel = self.channels.get(job.channel)
            notice = Notice.from_json(job.notice)
            if self.refresh is not None and kind == "mqtt" and job.channel.get("person") is None:
                latest = await self.refresh(job.incident_id)
                if latest is not None:
                    notice = dataclasses.replace(notice, incident=latest)
            await asyncio.wait_for(channel.send(notice), self.cfg.lease_s * 0.8)
        except (DeliveryError, TimeoutError, HubError) as exc:
            retryable = exc.retryable if isinstance(exc, DeliveryError) else isinstance(exc, TimeoutError)
            error = str(exc) or type(exc).__name__
            if not retryable or job.attempts >= self.cfg.max_attempts:
                await self.queue.dead(job, error)
                self.stats["dead"] += 1
                self._count(kind, "dead")
                log.warning("notice %s on %s gave up after %d attempt(s): %s", job.key, kind, job.attempts,
                            error)
                return
            delay = backoff_s(job.attempts, self.cfg.retry_base_s, self.cfg.retry_max_s)
            if isinstance(exc, DeliveryError) and exc.retry_after_s is not None:
                delay = min(max(delay, exc.retry_after_s), self.cfg.retry_max_s)
            await self.queue.retry(job, error, delay)
            self.stats["retried"] += 1
            self._count(kind, "retry")
            log.info("notice %s on %s failed (attempt %d), retry in %.1f s: %s", job.key, kind, job.attempts,
                     delay, error)
            return
        await self.queue.complete(job)
        self.stats["delivered"] += 1
        self._count(kind, "delivered")

    def _count(self, channel: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.deliveries.labels(channel=channel, outcome=outcome).inc()
