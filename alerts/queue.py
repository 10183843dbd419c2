"""Durable dispatch queues behind one interface.

:class:`PgQueue` (default, single node) leases jobs straight from the ``dispatch_jobs`` outbox
with ``FOR UPDATE SKIP LOCKED``. The NATS JetStream backend (:mod:`alerts.queue_nats`) relays the
same outbox into a work-queue stream so many hub nodes share the deliveries. Either way a job is
delivered at least once, always with the same idempotency key.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from hub.storage import dispatch as sql
from hub.storage.dispatch import Job

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[psycopg.AsyncConnection[Any]]


class JobQueue(ABC):
    """Where the dispatcher gets work and reports outcomes."""

    name: str = "queue"

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect; give back work this node held before a crash."""

    @abstractmethod
    async def lease(self, limit: int) -> list[Job]:
        """Up to ``limit`` jobs ready now (may wait briefly for work; may return none)."""

    @abstractmethod
    async def complete(self, job: Job) -> None:
        """Delivered: never deliver again."""

    @abstractmethod
    async def retry(self, job: Job, error: str, delay_s: float) -> None:
        """Failed, retry after ``delay_s``."""

    @abstractmethod
    async def dead(self, job: Job, error: str) -> None:
        """Give up: onto the dead-letter list."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect."""


class PgQueue(JobQueue):
    name = "postgres"

    def __init__(self, pool: Pool, node: str, *, lease_s: float = 30.0) -> None:
        self.pool = pool
        self.node = node
        self.lease_s = lease_s

    async def start(self) -> None:
        async with self.pool.connection() as conn:
            released = await sql.release(conn, self.node)
        if released:
            log.info("%d deliveries in flight when this node stopped are queued again", released)

    async def lease(self, limit: int) -> list[Job]:
        async with self.pool.connection() as conn:
            return await sql.lease(conn, self.node, limit, self.lease_s)

    async def complete(self, job: Job) -> None:
        async with self.pool.connection() as conn:
            await sql.complete(conn, job.id)

    async def retry(self, job: Job, error: str, delay_s: float) -> None:
        async with self.pool.connection() as conn:
            await sql.retry(conn, job.id, error, delay_s)

    async def dead(self, job: Job, error: str) -> None:
        async with self.pool.connection() as conn:
            await sql.dead(conn, job.id, error)
