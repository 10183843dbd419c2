"""NatsQueue against the real NATS JetStream server and the real PostgreSQL: relay, lease, outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import nats
import nats.js.errors
import pytest
from psycopg.rows import dict_row

from alerts.channels.base import Channel, Notice
from alerts.dispatcher import ChannelSet, Dispatcher
from alerts.queue_nats import NatsQueue, job_message, redact, subject_token
from alerts.settings import DispatchSection
from hub.errors import DeliveryError
from hub.storage import Database
from hub.storage import dispatch as sql
from hub.storage.dispatch import Job
from tests.support import pg

pg_url = pg.pg_url

NATS_URL = "nats://127.0.0.1:4222"
Factory = Callable[..., Awaitable[NatsQueue]]


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with Database(pg_url, timescaledb="off") as database:
        yield database


@pytest.fixture
async def js() -> AsyncIterator[Any]:
    """A plain client of the real server (fails loudly when it is not running)."""
    with socket.create_connection(("127.0.0.1", 4222), timeout=2):
        pass  # no NATS server on 4222: this test needs the real one
    nc = await nats.connect(NATS_URL, allow_reconnect=False)
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def names(js: Any) -> AsyncIterator[dict[str, str]]:
    """A stream name and subject prefix of this test only; the stream is deleted afterwards."""
    tag = secrets.token_hex(4)
    yield {"stream": f"T_DISPATCH_{tag}", "subject_prefix": f"t{tag}.dispatch"}
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(f"T_DISPATCH_{tag}")


@pytest.fixture
async def node(db: Database, names: dict[str, str]) -> AsyncIterator[Factory]:
    """Start NatsQueue nodes on this test's stream; all are closed afterwards."""
    made: list[NatsQueue] = []

    async def make(name: str, **kw: Any) -> NatsQueue:
        queue = NatsQueue(db.pool, name, url=NATS_URL, poll_s=0.2, **{"lease_s": 5.0, **names, **kw})
        made.append(queue)
        await queue.start()
        return queue

    yield make
    for queue in made:
        await queue.close()


def notice(key: str) -> dict[str, Any]:
    return Notice(key=key, event="opened", incident={"id": "i1", "class": "general", "grid": "G1"},
                  state="dispatched").to_json()


async def add(db: Database, n: int, *, queue: str = "440106001001", prefix: str = "k") -> list[str]:
    keys = [f"{prefix}{i}" for i in range(n)]
    async with db.pool.connection() as conn, conn.transaction():
        await sql.enqueue(conn, [sql.NewJob(k, queue, "i1", {"type": "mqtt"}, notice(k)) for k in keys])
    return keys


async def rows(db: Database) -> dict[str, dict[str, Any]]:
    async with db.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM dispatch_jobs ORDER BY id")
        return {r["key"]: r for r in await cur.fetchall()}


async def take(queue: NatsQueue, n: int, within_s: float = 5.0, limit: int = 10) -> list[Job]:
    """Lease until ``n`` jobs came (or the time is up); returns all that came."""
    got: list[Job] = []
    deadline = time.monotonic() + within_s
    while len(got) < n and time.monotonic() < deadline:
        got += await queue.lease(limit)
    return got


async def nothing_for(queue: NatsQueue, seconds: float) -> list[Job]:
    got: list[Job] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += await queue.lease(10)
    return got


async def stream_seq(js: Any, names: dict[str, str]) -> tuple[int, int]:
    """(messages stored now, last sequence ever used) of the test's stream."""
    info = await js.stream_info(names["stream"])
    return info.state.messages, info.state.last_seq


def test_queue_names_become_subject_tokens_and_urls_lose_secrets() -> None:
    assert subject_token("440106001001") == "440106001001"
    assert subject_token("生态环境") == "_E7_94_9F_E6_80_81_E7_8E_AF_E5_A2_83"
    assert subject_token("a.b *>") == "a_2Eb_20_2A_3E"
    assert subject_token("") == "_"
    tokens = [subject_token(q) for q in ("a_2E", "a.", "a_", "城管", "-", "")]
    assert len(set(tokens)) == len(tokens)
    assert all(t and all(c.isascii() and (c.isalnum() or c in "-_") for c in t) for t in tokens)
    assert redact("nats://hub:s3cret@nats.example:4222/?token=abc") == "nats://nats.example:4222"
    with pytest.raises(ValueError, match="subject prefix"):
        NatsQueue(None, "n", subject_prefix="a.*")  # type: ignore[arg-type]


async def test_relayed_delivered_once_and_completed_rows_done(db: Database, node: Factory, js: Any,
                                                              names: dict[str, str]) -> None:
    keys = await add(db, 3) + await add(db, 2, queue="生态环境", prefix="env")
    queue = await node("n1")
    jobs = await take(queue, 5)
    assert sorted(j.key for j in jobs) == sorted(keys)
    assert {j.attempts for j in jobs} == {1}
    assert {j.queue for j in jobs} == {"440106001001", "生态环境"}
    assert Notice.from_json(jobs[0].notice).key == jobs[0].key
    info = await js.stream_info(names["stream"], subjects_filter=">")
    prefix = names["subject_prefix"]
    assert info.state.subjects == {f"{prefix}.440106001001": 3, f"{prefix}.{subject_token('生态环境')}": 2}
    before = await rows(db)
    assert all(r["relayed"] and r["leased_by"] == "n1" and r["attempts"] == 1 for r in before.values())
    for job in jobs:
        await queue.complete(job)
    assert await nothing_for(queue, 0.6) == []
    after = await rows(db)
    assert {r["state"] for r in after.values()} == {"done"}
    assert all(r["done_at"] is not None for r in after.values())
    await asyncio.sleep(0.1)
    assert await stream_seq(js, names) == (0, 5)  # acked work-queue messages are gone


async def test_nak_redelivers_after_the_delay_with_one_more_attempt(db: Database, node: Factory) -> None:
    await add(db, 1)
    queue = await node("n1")
    [job] = await take(queue, 1)
    await queue.retry(job, "peer said 503", 0.8)
    started = time.monotonic()
    row = (await rows(db))["k0"]
    assert row["last_error"] == "peer said 503" and row["relayed"] and row["state"] == "pending"
    [again] = await take(queue, 1)
    assert time.monotonic() - started >= 0.6
    assert again.key == job.key and again.attempts == 2
    assert (await rows(db))["k0"]["attempts"] == 2
    await queue.complete(again)
    assert (await rows(db))["k0"]["state"] == "done"


async def test_two_nodes_share_the_work_without_overlap(db: Database, node: Factory, js: Any,
                                                         names: dict[str, str]) -> None:
    keys = await add(db, 24)
    a, b = await node("a"), await node("b")  # both relay: SKIP LOCKED splits the outbox
    held: dict[str, list[Job]] = {"a": [], "b": []}
    deadline = time.monotonic() + 8
    while sum(map(len, held.values())) < len(keys) and time.monotonic() < deadline:
        held["a"] += await a.lease(3)  # nothing acked yet: a second delivery would show up here
        held["b"] += await b.lease(3)
    ids_a, ids_b = [j.key for j in held["a"]], [j.key for j in held["b"]]
    assert held["a"] and held["b"]
    assert not set(ids_a) & set(ids_b)
    assert sorted(ids_a + ids_b) == sorted(keys)  # each exactly once
    assert {r["leased_by"] for r in (await rows(db)).values()} == {"a", "b"}
    for job in held["a"]:
        await a.complete(job)
    for job in held["b"]:
        await b.complete(job)
    assert await nothing_for(a, 0.4) == [] and await nothing_for(b, 0.2) == []
    assert {r["state"] for r in (await rows(db)).values()} == {"done"}
    assert (await stream_seq(js, names))[1] == len(keys)  # never published twice
    assert a.stats["relayed"] + b.stats["relayed"] == len(keys)


async def test_a_job_held_by_a_dead_node_goes_to_another_after_ack_wait(db: Database, node: Factory) -> None:
    await add(db, 1)
    a = await node("a", lease_s=1.0)
    b = await node("b", lease_s=1.0)
    [job] = await take(a, 1)
    assert a.nc is not None
    await a.nc.close()  # the node dies: no ack, no nak
    died = time.monotonic()
    [again] = await take(b, 1, within_s=5)
    assert time.monotonic() - died >= 0.5  # only after the lease (ack_wait) ran out
    assert again.key == job.key and again.attempts == 2
    assert (await rows(db))["k0"]["leased_by"] == "b"
    await b.complete(again)
    assert (await rows(db))["k0"]["state"] == "done"


async def test_dead_job_is_stored_dead_and_never_redelivered(db: Database, node: Factory) -> None:
    await add(db, 1)
    queue = await node("n1", lease_s=1.0)
    [job] = await take(queue, 1)
    await queue.dead(job, "HTTP 400 bad signature")
    assert await nothing_for(queue, 1.6) == []  # longer than ack_wait: the message was terminated
    row = (await rows(db))["k0"]
    assert row["state"] == "dead" and row["last_error"] == "HTTP 400 bad signature"


async def test_publish_before_a_relay_crash_is_not_delivered_twice(db: Database, node: Factory, js: Any,
                                                                  names: dict[str, str]) -> None:
    await add(db, 1)
    async with db.pool.connection() as conn, conn.transaction(force_rollback=True):
        cur = conn.cursor(row_factory=dict_row)  # the "crashed" relay holds the row...
        await cur.execute("SELECT * FROM dispatch_jobs WHERE key = 'k0' FOR UPDATE")
        row = await cur.fetchone()
        assert row is not None
        queue = await node("n1")  # ...so this relay skips it for now
        subject, payload, headers = job_message(row, names["subject_prefix"])
        ack = await js.publish(subject, payload, headers=headers)  # published, then it dies (rollback)
        assert not ack.duplicate
    queue.wake()
    [job] = await take(queue, 1)
    assert job.key == "k0"
    for _ in range(20):  # the relay published again and committed relayed
        if (await rows(db))["k0"]["relayed"]:
            break
        await asyncio.sleep(0.05)
    assert (await rows(db))["k0"]["relayed"]
    assert queue.stats["duplicates"] == 1
    await queue.complete(job)
    assert await nothing_for(queue, 0.6) == []
    assert await stream_seq(js, names) == (0, 1)


async def test_requeued_dead_job_is_delivered_again_inside_the_duplicate_window(db: Database,
                                                                                node: Factory) -> None:
    await add(db, 1)
    queue = await node("n1")
    [job] = await take(queue, 1)
    await queue.dead(job, "gave up")
    async with db.pool.connection() as conn:
        assert await sql.requeue_dead(conn, job.id)
    queue.wake()
    [again] = await take(queue, 1)
    assert again.key == job.key and again.attempts == 1
    await queue.complete(again)
    row = (await rows(db))["k0"]
    assert row["state"] == "done" and row["relayed"]
    assert queue.stats == {"relayed": 2, "duplicates": 0}


class Recorder(Channel):
    """The far edge: records notices; fails the first attempt of keys in ``flaky``."""

    type: ClassVar[str] = "mqtt"

    def __init__(self, flaky: set[str]) -> None:
        self.flaky = flaky
        self.sent: list[str] = []
        self.failed: list[str] = []

    async def send(self, notice: Notice) -> None:
        if notice.key in self.flaky and notice.key not in self.failed:
            self.failed.append(notice.key)
            raise DeliveryError("broker busy", retryable=True)
        self.sent.append(notice.key)


async def test_dispatcher_delivers_every_job_through_nats(db: Database, names: dict[str, str]) -> None:
    keys = await add(db, 12)
    channel = Recorder(flaky={"k3", "k7"})
    cfg = DispatchSection(workers=4, lease_s=5.0, retry_base_s=0.3, retry_max_s=1.0)
    queue = NatsQueue(db.pool, "d1", url=NATS_URL, stream=names["stream"], lease_s=5.0, poll_s=0.2,
                      subject_prefix=names["subject_prefix"])
    dispatcher = Dispatcher(queue, ChannelSet([], mqtt=channel), cfg, poll_s=0.2)
    run = asyncio.create_task(dispatcher.run())
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = {r["state"] for r in (await rows(db)).values()}
            if states == {"done"}:
                break
            await asyncio.sleep(0.1)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert sorted(channel.sent) == sorted(keys)  # each delivered once
    assert sorted(channel.failed) == ["k3", "k7"]
    final = await rows(db)
    assert {r["state"] for r in final.values()} == {"done"}
    assert final["k3"]["attempts"] == 2 and final["k0"]["attempts"] == 1
    assert dispatcher.stats == {"delivered": 12, "retried": 2, "dead": 0}
    assert queue.nc is None  # the dispatcher closed it
