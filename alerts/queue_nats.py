"""The multi-node dispatch queue: the PostgreSQL outbox relayed into a NATS JetStream work queue.

Every node runs a relay that moves due outbox rows (``pending``, not ``relayed``, ``next_at`` passed)
into the work-queue stream, ``FOR UPDATE SKIP LOCKED`` so two relays never take the same row, and
marks them ``relayed`` in the same transaction once JetStream acknowledged the publish. All nodes
pull from one durable consumer, so each message goes to one node at a time; a node that dies holding
it loses it to another node after ``ack_wait`` (= ``lease_s``). Outcomes are written to PostgreSQL
first, then acked (done), nak'd with a delay (retry) or terminated (dead).

Duplicates: each message carries ``Nats-Msg-Id = "<key>:<generation>"``, so a relay that published
and died before committing ``relayed`` publishes again under the same id and JetStream drops the
copy (within the stream's duplicate window). The generation is ``next_at`` of the row at relay time,
in microseconds since the epoch: only ``enqueue`` and ``requeue_dead`` (the API's "retry" of a dead
job, which also clears ``relayed``) set it while the row is unrelayed, and :meth:`NatsQueue.retry`
moves it only once the row is relayed. A re-queued dead job therefore gets a fresh id and is
relayed again even inside the duplicate window, while a re-publish after a crash keeps its id.
``created_at`` stays the same on a requeue and ``attempts``/``done_at`` go back to values they had
before, so neither of those would do.

Subjects: ``<prefix>.<queue token>``. Queue names (grid codes, department names such as 生态环境)
are escaped, not hashed, so the token stays readable and reversible: ASCII letters, digits and
``-`` are kept, every other UTF-8 byte becomes ``_XX`` (upper-case hex); an empty name is ``_``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from psycopg.rows import dict_row

from alerts.queue import JobQueue, Pool
from hub.storage import dispatch as sql
from hub.storage.dispatch import Job

log = logging.getLogger(__name__)

CONSUMER = "dispatch"  # the one durable pull consumer every node shares
DUPLICATE_WINDOW_S = 600.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEEP = frozenset((string.ascii_letters + string.digits + "-").encode())
_NAME = re.compile(r"[^\s.*>]+")

_RELAY_SQL = (
    "SELECT id, key, queue, incident_id, channel, notice, next_at FROM dispatch_jobs WHERE state = 'pending' "
    "AND NOT relayed AND next_at <= now() ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED")
_LEASE_SQL = (
    "UPDATE dispatch_jobs j SET attempts = d.n, leased_by = %s, "
    "leased_until = now() + make_interval(secs => %s) FROM unnest(%s::bigint[], %s::int[]) AS d(id, n) "
    "WHERE j.id = d.id AND j.state = 'pending' RETURNING j.id")
# next_at is the message generation while the row is unrelayed: move it only once relayed.
_RETRY_SQL = (
    "UPDATE dispatch_jobs SET last_error = %s, leased_until = NULL, next_at = CASE WHEN relayed "
    "THEN now() + make_interval(secs => %s) ELSE next_at END WHERE id = %s AND state = 'pending'")


def subject_token(queue: str) -> str:
    """``queue`` as one valid, reversible subject token (see the module notes)."""
    if not queue:
        return "_"
    return "".join(chr(b) if b in _KEEP else f"_{b:02X}" for b in queue.encode())


def msg_id(key: str, next_at: datetime) -> str:
    """The ``Nats-Msg-Id`` of one generation of a job (``next_at`` when it was relayed)."""
    return f"{key}:{(next_at - _EPOCH) // timedelta(microseconds=1)}"


def job_message(row: Mapping[str, Any], prefix: str) -> tuple[str, bytes, dict[str, str]]:
    """Subject, payload and headers of an outbox row as the relay publishes it."""
    body = {k: row[k] for k in ("id", "key", "queue", "incident_id", "channel", "notice")}
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Nats-Msg-Id": msg_id(row["key"], row["next_at"])}
    return f"{prefix}.{subject_token(row['queue'])}", payload, headers


def redact(url: str) -> str:
    """``url`` without user, password or token (for logs)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


class NatsQueue(JobQueue):
    """Dispatch jobs shared by many hub nodes through one JetStream work-queue stream."""

    name = "nats"

    def __init__(self, pool: Pool, node: str, *, url: str = "nats://127.0.0.1:4222",
                 stream: str = "SANWANG_DISPATCH", subject_prefix: str = "sanwang.dispatch",
                 lease_s: float = 30.0, relay_batch: int = 200, poll_s: float = 0.5) -> None:
        if not _NAME.fullmatch(stream):
            raise ValueError(f"invalid JetStream stream name {stream!r}")
        if not all(_NAME.fullmatch(t) for t in subject_prefix.split(".")):
            raise ValueError(f"invalid subject prefix {subject_prefix!r}")
        self.pool = pool
        self.node = node
        self.url = url
        self.stream = stream
        self.prefix = subject_prefix
        self.lease_s = lease_s
        self.relay_batch = relay_batch
        self.poll_s = poll_s
        self.nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._relay: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._held: dict[int, Msg] = {}  # job id -> the message it came in (for the outcome)
        self.stats = {"relayed": 0, "duplicates": 0}
        self._closing = False

    async def start(self) -> None:
        where = redact(self.url)
        log.info("dispatch queue: connecting to NATS at %s as node %s", where, self.node)
        self.nc = await nats.connect(
            self.url, name=f"sanwang-hub {self.node}", max_reconnect_attempts=-1, reconnect_time_wait=2,
            error_cb=self._on_error, disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect)
        self._js = self.nc.jetstream()
        await self._ensure_stream()
        consumer = ConsumerConfig(
            durable_name=CONSUMER, name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=self.lease_s,
            deliver_policy=DeliverPolicy.ALL, max_deliver=-1, filter_subject=f"{self.prefix}.>")
        await self._js.add_consumer(self.stream, config=consumer)  # creates, or updates ack_wait
        self._sub = await self._js.pull_subscribe_bind(durable=CONSUMER, stream=self.stream)
        self._relay = asyncio.create_task(self._relay_loop(), name=f"dispatch-relay-{self.node}")
        log.info("dispatch queue: stream %s on %s ready", self.stream, where)

    async def _ensure_stream(self) -> None:
        assert self._js is not None
        config = StreamConfig(
            name=self.stream, subjects=[f"{self.prefix}.>"], retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_S)
        try:
            await self._js.add_stream(config)  # the same config again is fine
        except nats.js.errors.BadRequestError:  # exists with other settings: update them
            await self._js.update_stream(config)

    def wake(self) -> None:
        """Jobs were committed: relay now instead of at the next poll."""
        self._wake.set()

    async def relay(self) -> int:
        """Move one batch of due outbox rows into the stream; returns how many were relayed."""
        assert self._js is not None, "start() first"
        js = self._js
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_RELAY_SQL, (self.relay_batch,))
            rows = await cur.fetchall()
            if not rows:
                return 0

            async def publish(row: dict[str, Any]) -> int:
                subject, payload, headers = job_message(row, self.prefix)
                ack = await js.publish(subject, payload, stream=self.stream, headers=headers)
                if ack.duplicate:
                    self.stats["duplicates"] += 1
                    log.info("job %s was already in the stream (a relay stopped half-way)", row["key"])
                return int(row["id"])

            results = await asyncio.gather(*(publish(r) for r in rows), return_exceptions=True)
            done = [r for r in results if isinstance(r, int)]
            if failed := [r for r in results if isinstance(r, BaseException)]:
                log.warning("dispatch relay: %d of %d publishes failed (%s); they are tried again",
                            len(failed), len(rows), failed[0])
            if done:
                await conn.execute("UPDATE dispatch_jobs SET relayed = true WHERE id = ANY(%s)", (done,))
        self.stats["relayed"] += len(done)
        return len(done)

    async def _relay_loop(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            moved = 0
            try:
                moved = await self.relay()
                failures = 0
            except Exception as exc:  # PostgreSQL or NATS away: keep trying, the outbox keeps the rows
                failures += 1
                log.warning("dispatch relay failed (%s: %s); trying again", type(exc).__name__, exc)
                pause = min(30.0, self.poll_s * 2 ** min(failures, 6))
                await asyncio.sleep(pause * (0.8 + 0.4 * random.random()))
            if moved >= self.relay_batch:
                continue  # more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def lease(self, limit: int) -> list[Job]:
        if self._sub is None:
            raise RuntimeError("NatsQueue.lease() before start()")
        try:
            msgs = await self._sub.fetch(limit, timeout=self.poll_s)
        except TimeoutError:  # nats.errors.TimeoutError is one too: no work now
            return []
        except nats.errors.Error as exc:
            log.warning("dispatch queue: fetch failed (%s: %s)", type(exc).__name__, exc)
            return []
        fresh: dict[int, tuple[Job, Msg]] = {}
        for msg in msgs:
            try:
                job = self._decode(msg)
            except (ValueError, KeyError, TypeError, nats.errors.Error) as exc:
                log.warning("dropping a malformed dispatch message on %s: %s", msg.subject, exc)
                await self._term(msg)
                continue
            if job.id in self._held:  # redelivered while we still work on it: answer the newest
                self._held[job.id] = msg
                continue
            fresh[job.id] = (job, msg)
        if not fresh:
            return []
        ids = list(fresh)
        async with self.pool.connection() as conn:
            cur = await conn.execute(_LEASE_SQL, (self.node, self.lease_s, ids,
                                                  [fresh[i][0].attempts for i in ids]))
            pending = {int(r[0]) for r in await cur.fetchall()}
        jobs = []
        for job_id, (job, msg) in fresh.items():
            if job_id in pending:
                self._held[job_id] = msg
                jobs.append(job)
            else:  # done or dead already (a node stopped between PostgreSQL and the ack): drop it
                log.info("job %s is no longer pending; dropping its message", job.key)
                await self._term(msg)
        return jobs

    @staticmethod
    async def _term(msg: Msg) -> None:
        with contextlib.suppress(nats.errors.Error):  # not acked: it comes back and is dropped then
            await msg.term()

    @staticmethod
    def _decode(msg: Msg) -> Job:
        data = json.loads(msg.data)
        return Job(int(data["id"]), str(data["key"]), str(data["queue"]), str(data["incident_id"]),
                   dict(data["channel"]), dict(data["notice"]), int(msg.metadata.num_delivered))

    async def complete(self, job: Job) -> None:
        msg = self._held.pop(job.id, None)
        async with self.pool.connection() as conn:
            await sql.complete(conn, job.id)
        if msg is not None:
            await msg.ack()

    async def retry(self, job: Job, error: str, delay_s: float) -> None:
        msg = self._held.pop(job.id, None)
        async with self.pool.connection() as conn:
            await conn.execute(_RETRY_SQL, (error[:500], delay_s, job.id))
        if msg is not None:
            await msg.nak(delay=delay_s)

    async def dead(self, job: Job, error: str) -> None:
        msg = self._held.pop(job.id, None)
        async with self.pool.connection() as conn:
            await sql.dead(conn, job.id, error)
        if msg is not None:
            await msg.term()

    async def close(self) -> None:
        self._closing = True
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
            self._relay = None
        held, self._held = list(self._held.values()), {}
        for msg in held:  # deliveries cut short by the shutdown: hand them to another node now
            with contextlib.suppress(nats.errors.Error):
                await msg.nak()
        # Not nc.drain(): it waits for the pull subscription's queue to be joined, which never happens.
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                if self._sub is not None:
                    await self._sub.unsubscribe()
                await self.nc.flush(timeout=2)  # the naks and acks reach the server
            await self.nc.close()
        self.nc = self._js = self._sub = None
        self._closing = False

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS (%s): %s: %s", redact(self.url), type(exc).__name__, exc)

    async def _on_disconnect(self) -> None:
        if not self._closing:
            log.warning("NATS (%s) disconnected", redact(self.url))

    async def _on_reconnect(self) -> None:
        log.info("NATS (%s) reconnected", redact(self.url))
