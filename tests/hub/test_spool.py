"""hub.storage.spool on real files: round trips, order, failed and resumed replays, a real SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import struct
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg.types.json import Jsonb

from hub.errors import StorageError
from hub.storage.spool import Spool, SpoolFull
from tests.support.spool_appender import batch, planned

ROOT = Path(__file__).resolve().parents[2]
Row = tuple[Any, ...]


class Sink:
    """A ``write`` for replay that records what it was given and can fail on chosen calls."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.calls: list[tuple[str, list[Row]]] = []
        self.attempts = 0
        self.fail_on = fail_on or set()

    async def __call__(self, table: str, rows: list[Row]) -> None:
        self.attempts += 1
        if self.attempts in self.fail_on:
            raise ConnectionError("database is down")
        self.calls.append((table, rows))

    @property
    def rows(self) -> list[Row]:
        return [row for _, rows in self.calls for row in rows]


def numbered(i: int, n: int = 100) -> list[Row]:
    return [(i, r, f"b{i}r{r}") for r in range(n)]


def segments(path: Path, suffix: str = ".seg") -> list[Path]:
    return sorted(p for p in path.iterdir() if p.name.endswith(suffix))


def record_offsets(path: Path) -> list[int]:
    data, offsets, pos = path.read_bytes(), [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 20 + struct.unpack_from("<I", data, pos + 4)[0]
    return offsets


async def test_round_trip_of_every_value_type(tmp_path: Path) -> None:
    shanghai, new_york = ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")
    ambiguous = datetime(2021, 11, 7, 1, 30, 0, 5, tzinfo=new_york, fold=1)  # the second 01:30 (EST)
    row: Row = (
        "plain", "", "门禁 🚪", "lone \udc80 surrogate", 0, -(2**70), 3.25, -0.0, math.inf, True, False, None,
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 3, 1, 7, 8, 9, 123456, tzinfo=shanghai), ambiguous,
        datetime(2024, 3, 1, 7, 8, 9, 1, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
        datetime(2024, 3, 1, 7, 8, 9, 1), date(2024, 1, 2), b"\x00\xffbin", bytearray(b"ba"),
        {"a": [1, 2.5, None, True], "b": {"c": "d"}, "$d": "looks like a tag"}, ["x", {"y": 1}], [],
        Jsonb({"k": [1, "v"]}),
    )
    with closing(Spool(tmp_path)) as spool:
        spool.append("everything", [row, (math.nan,)])
    sink = Sink()
    with closing(Spool(tmp_path)) as spool:  # a new process would see the same
        assert spool.pending_rows == 2
        assert await spool.replay(sink) == 2
    [(table, (back, nan_row))] = sink.calls
    assert table == "everything"
    assert isinstance(back, tuple) and len(back) == len(row)
    for want, got in zip(row[:-1], back[:-1], strict=True):
        assert (got == want and type(got) is type(want)) or (type(want) is bytearray and type(got) is bytes)
    assert math.copysign(1, back[7]) == -1  # -0.0 kept its sign
    for i in (12, 13, 14, 15):
        assert back[i].utcoffset() == row[i].utcoffset() and back[i].isoformat() == row[i].isoformat()
    assert back[13].tzinfo is shanghai and back[14].tzinfo is new_york and back[14].fold == 1
    assert back[16].tzinfo is None
    assert isinstance(back[-1], Jsonb) and back[-1].obj == {"k": [1, "v"]}
    assert math.isnan(nan_row[0])


def test_unsupported_value_raises_and_writes_nothing(tmp_path: Path) -> None:
    with closing(Spool(tmp_path)) as spool:
        with pytest.raises(TypeError, match="column 1 of type object"):
            spool.append("t", [(1, "ok"), (2, object())])
        assert spool.pending_rows == 0 and spool.pending_bytes == 0
    assert segments(tmp_path) == []


async def test_order_is_kept_across_many_segments(tmp_path: Path) -> None:
    with closing(Spool(tmp_path, segment_bytes=4096)) as spool:
        for i in range(120):
            spool.append(f"t{i % 3}", numbered(i, 1 + i % 40))
        assert len(segments(tmp_path)) > 10
        sink = Sink()
        assert await spool.replay(sink, batch_rows=7) == sum(1 + i % 40 for i in range(120))
        assert spool.pending_rows == 0 and spool.pending_bytes == 0
    assert sink.rows == [row for i in range(120) for row in numbered(i, 1 + i % 40)]
    for table, rows in sink.calls:  # chunks of at most 7 rows, never mixing batches, each with its table
        assert len(rows) <= 7 and {r[0] for r in rows} == {rows[0][0]} and table == f"t{rows[0][0] % 3}"
    assert segments(tmp_path) == []  # every acknowledged segment was deleted


async def test_failed_write_stops_replay_and_that_batch_comes_first_next_time(tmp_path: Path) -> None:
    with closing(Spool(tmp_path, segment_bytes=8192)) as spool:
        for i in range(10):
            spool.append("events", numbered(i))
        sink = Sink(fail_on={4})
        with pytest.raises(ConnectionError):
            await spool.replay(sink)
        assert [rows[0][0] for _, rows in sink.calls] == [0, 1, 2]
        assert spool.pending_rows == 700
        assert await spool.replay(sink) == 700
        assert sink.attempts == 11
    assert [rows[0][0] for _, rows in sink.calls] == list(range(10))  # batch 3 first on the retry
    assert sink.rows == [row for i in range(10) for row in numbered(i)]  # no loss, no duplicate


async def test_restart_mid_replay_replays_the_rest(tmp_path: Path) -> None:
    with closing(Spool(tmp_path, segment_bytes=4096)) as spool:
        for i in range(20):
            spool.append("events", numbered(i, 30))
        sink = Sink(fail_on={9})
        with pytest.raises(ConnectionError):
            await spool.replay(sink)
    second = Sink()
    with closing(Spool(tmp_path, segment_bytes=4096)) as spool:
        assert spool.pending_rows == 12 * 30
        assert await spool.replay(second) == 12 * 30
    assert second.rows == [row for i in range(8, 20) for row in numbered(i, 30)]


async def test_split_batches_resume_inside_a_batch_after_restart(tmp_path: Path) -> None:
    big = numbered(0, 12_000)
    with closing(Spool(tmp_path)) as spool:
        spool.append("events", big)
        spool.append("events", numbered(1, 10))
        sink = Sink(fail_on={2})
        with pytest.raises(ConnectionError):
            await spool.replay(sink, batch_rows=5000)
        assert spool.pending_rows == 7010
    with closing(Spool(tmp_path)) as spool:
        assert spool.pending_rows == 7010
        assert await spool.replay(sink, batch_rows=5000) == 7010
    assert [len(rows) for _, rows in sink.calls] == [5000, 5000, 2000, 10]
    assert sink.rows == big + numbered(1, 10)


async def test_crash_between_write_and_ack_replays_that_chunk_again(tmp_path: Path) -> None:
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    with closing(Spool(live)) as spool:
        for i in range(3):
            spool.append("events", numbered(i))

        async def write_then_crash(table: str, rows: list[Row]) -> None:
            if rows[0][0] == 1 and not crashed.exists():
                shutil.copytree(live, crashed)  # the disk as a crash right after this write would leave it
        await spool.replay(write_then_crash)
    sink = Sink()
    with closing(Spool(crashed)) as spool:
        assert await spool.replay(sink) == 200
    assert sink.rows == numbered(1) + numbered(2)  # batch 1 again (at-least-once), nothing lost


async def test_appends_during_replay_are_replayed_in_order(tmp_path: Path) -> None:
    with closing(Spool(tmp_path, segment_bytes=4096)) as spool:
        for i in range(5):
            spool.append("events", numbered(i, 20))
        seen: list[Row] = []

        async def write(table: str, rows: list[Row]) -> None:
            seen.extend(rows)
            if rows[0][0] < 3:
                spool.append("events", numbered(rows[0][0] + 10, 20))
        assert await spool.replay(write) == 8 * 20
    assert [r[0] for r in seen[::20]] == [0, 1, 2, 3, 4, 10, 11, 12]


def start_appender(directory: Path, big: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.support.spool_appender", str(directory), str(big)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


def read_acknowledged(proc: subprocess.Popen[str], until: int) -> int:
    assert proc.stdout is not None
    acknowledged = -1
    while acknowledged < until:
        line = proc.stdout.readline()
        assert line, f"appender died (exit {proc.poll()})"
        acknowledged = int(line)
    return acknowledged


async def reopen_after_crash(directory: Path, acknowledged: int, big: int = 0) -> int:
    """Check the spool a killed appender left; return how many batches survived."""
    sink = Sink()
    with closing(Spool(directory, segment_bytes=256 << 10)) as spool:
        await spool.replay(sink)
        got = [rows for _, rows in sink.calls]
        assert len(got) in (acknowledged + 1, acknowledged + 2)  # every returned append survived
        for i, rows in enumerate(got):
            assert rows == planned(i, big), f"batch {i} differs"
        spool.append("events", batch(1))  # and the spool takes appends again
        assert await spool.replay(sink) == len(batch(1))
    assert sink.calls[-1][1] == batch(1)
    return len(got)


def kill_while_appending(directory: Path) -> int:
    """SIGKILL the appender a moment after its 30th append returned; the last batch it acknowledged."""
    proc = start_appender(directory)
    acknowledged = read_acknowledged(proc, 30)
    time.sleep(0.0037)  # land somewhere inside a later append
    proc.kill()
    proc.wait()
    assert proc.stdout is not None
    acknowledged = max([acknowledged, *(int(x) for x in proc.stdout.read().split())])
    proc.stdout.close()
    return acknowledged


def kill_inside_big_write(directory: Path) -> int:
    """SIGKILL the appender once the write of its ~8 MB batch 5 has begun; the last batch it acknowledged."""
    proc = start_appender(directory, big=30)
    assert read_acknowledged(proc, 4) == 4
    before = sum(p.stat().st_size for p in segments(directory))
    deadline = time.monotonic() + 20
    while sum(p.stat().st_size for p in segments(directory)) <= before:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.0002)  # still encoding
    proc.kill()
    proc.wait()
    assert proc.stdout is not None
    acknowledged = max([4, *(int(x) for x in proc.stdout.read().split())])
    proc.stdout.close()
    return acknowledged


async def test_appends_from_a_worker_thread_while_replaying(tmp_path: Path) -> None:
    with closing(Spool(tmp_path, segment_bytes=8192)) as spool:
        spool.append("events", numbered(0, 50))
        seen: list[Row] = []

        async def slow_write(table: str, rows: list[Row]) -> None:
            seen.extend(rows)
            await asyncio.sleep(0.001)

        def append_many() -> None:
            for i in range(1, 80):
                spool.append("events", numbered(i, 50))

        replayed = 0
        appender = asyncio.create_task(asyncio.to_thread(append_many))
        while not appender.done() or spool.pending_rows:
            replayed += await spool.replay(slow_write, batch_rows=30)
            await asyncio.sleep(0)
        await appender
        assert replayed == 80 * 50 and spool.pending_rows == 0
    assert seen == [row for i in range(80) for row in numbered(i, 50)]


async def test_sigkill_while_appending_loses_no_returned_append(tmp_path: Path) -> None:
    acknowledged = kill_while_appending(tmp_path)
    assert len(segments(tmp_path)) > 5
    await reopen_after_crash(tmp_path, acknowledged)


async def test_sigkill_inside_a_write_leaves_a_torn_tail_that_is_cut(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torn = False
    for attempt in range(3):  # a busy machine may finish the write before the kill; then try again
        directory = tmp_path / str(attempt)
        acknowledged = kill_inside_big_write(directory)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hub.storage.spool"):
            survived = await reopen_after_crash(directory, acknowledged, big=30)
        if "torn tail" in caplog.text:
            assert survived == 5  # the half-written batch 5 is gone, batches 0-4 are whole
            torn = True
            break
    assert torn, "no kill landed inside the write in three tries"


async def test_torn_tail_is_cut_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with closing(Spool(tmp_path)) as spool:
        for i in range(5):
            spool.append("events", numbered(i))
    [seg] = segments(tmp_path)
    size, last = seg.stat().st_size, record_offsets(seg)[-1]
    with seg.open("r+b") as f:
        f.truncate(size - 7)  # the last append was cut short
    with caplog.at_level(logging.WARNING, logger="hub.storage.spool"), closing(Spool(tmp_path)) as spool:
        assert f"torn tail of {size - 7 - last} bytes" in caplog.text
        assert seg.stat().st_size == last
        assert spool.pending_rows == 400
        spool.append("events", numbered(9))
        sink = Sink()
        await spool.replay(sink)
    assert sink.rows == [row for i in (0, 1, 2, 3, 9) for row in numbered(i)]
    assert "SPL1" not in caplog.text and "b0r0" not in caplog.text  # counts and sizes, never rows


async def test_zeroed_tail_is_cut_and_keeps_every_batch(tmp_path: Path) -> None:
    with closing(Spool(tmp_path)) as spool:
        for i in range(3):
            spool.append("events", numbered(i))
    [seg] = segments(tmp_path)
    with seg.open("ab") as f:
        f.write(b"\0" * 4096)  # a crash can leave the size grown but the blocks unwritten
    sink = Sink()
    with closing(Spool(tmp_path)) as spool:
        await spool.replay(sink)
    assert sink.rows == [row for i in range(3) for row in numbered(i)]


@pytest.mark.parametrize("where", ["payload", "header"])
async def test_mid_file_corruption_is_quarantined(tmp_path: Path, where: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with closing(Spool(tmp_path, segment_bytes=3 * 2200)) as spool:
        for i in range(9):
            spool.append("events", numbered(i))
    segs = segments(tmp_path)
    assert len(segs) == 3 and all(len(record_offsets(s)) == 3 for s in segs)
    middle = segs[1]
    original = bytearray(middle.read_bytes())
    second = record_offsets(middle)[1]
    original[second + (40 if where == "payload" else 5)] ^= 0x10  # record 4 of 9 (a middle record)
    middle.write_bytes(original)
    sink = Sink()
    with caplog.at_level(logging.ERROR, logger="hub.storage.spool"), closing(Spool(tmp_path)) as spool:
        assert "corrupt" in caplog.text and middle.name in caplog.text
        assert spool.pending_rows == 7 * 100  # batches 0-3 and 6-8
        await spool.replay(sink)
        spool.append("events", numbered(20))
        await spool.replay(sink)
    assert [rows[0][0] for _, rows in sink.calls] == [0, 1, 2, 3, 6, 7, 8, 20]
    quarantined = segments(tmp_path, ".corrupt")
    assert [p.name for p in quarantined] == [middle.name + ".corrupt"]
    assert quarantined[0].read_bytes() == original  # kept whole for a person to look at
    assert segments(tmp_path) == []


async def test_damage_found_during_replay_quarantines_and_goes_on(tmp_path: Path) -> None:
    with closing(Spool(tmp_path, segment_bytes=1000)) as spool:
        for i in range(3):
            spool.append("events", numbered(i, 30))
        segs = segments(tmp_path)
        assert len(segs) == 3
        data = bytearray(segs[1].read_bytes())
        data[100] ^= 0xFF  # the disk goes bad while the spool is open
        segs[1].write_bytes(data)
        sink = Sink()
        assert await spool.replay(sink) == 60
        assert spool.pending_rows == 0
    assert [rows[0][0] for _, rows in sink.calls] == [0, 2]
    assert [p.name for p in segments(tmp_path, ".corrupt")] == [segs[1].name + ".corrupt"]


async def test_damaged_ack_file_replays_everything_again(tmp_path: Path) -> None:
    with closing(Spool(tmp_path)) as spool:
        for i in range(4):
            spool.append("events", numbered(i))
        with pytest.raises(ConnectionError):
            await spool.replay(Sink(fail_on={3}))
    (tmp_path / "ack").write_bytes(b"garbage")
    sink = Sink()
    with closing(Spool(tmp_path)) as spool:
        assert spool.pending_rows == 400  # at-least-once: what was written goes again
        await spool.replay(sink)
    assert sink.rows == [row for i in range(4) for row in numbered(i)]


async def test_spool_full_writes_nothing_and_recovers_after_replay(tmp_path: Path) -> None:
    with closing(Spool(tmp_path, max_bytes=10_000, segment_bytes=4096)) as spool:
        appended = 0
        with contextlib.suppress(SpoolFull):
            for appended in range(100):
                spool.append("events", numbered(appended, 20))
        assert appended > 5
        assert isinstance(SpoolFull("x"), StorageError)
        before = {p.name: p.read_bytes() for p in segments(tmp_path)}
        assert spool.pending_rows == appended * 20
        assert spool.pending_bytes == sum(len(b) for b in before.values()) <= 10_000
        with pytest.raises(SpoolFull, match="max_bytes=10000"):
            spool.append("events", numbered(99, 20))
        assert {p.name: p.read_bytes() for p in segments(tmp_path)} == before
        sink = Sink()
        assert await spool.replay(sink) == appended * 20
        spool.append("events", numbered(99, 20))
        assert spool.pending_rows == 20


async def test_pending_counters_follow_acknowledgement(tmp_path: Path) -> None:
    with closing(Spool(tmp_path, segment_bytes=4096)) as spool:
        for i in range(6):
            spool.append("events", numbered(i, 50))
        on_disk = sum(p.stat().st_size for p in segments(tmp_path))
        assert (spool.pending_rows, spool.pending_bytes) == (300, on_disk)
        first_record = record_offsets(segments(tmp_path)[0])[1]
        with pytest.raises(ConnectionError):
            await spool.replay(Sink(fail_on={5}), batch_rows=20)  # batch 0 whole (3 chunks), 20 rows of 1
        assert (spool.pending_rows, spool.pending_bytes) == (230, on_disk - first_record)
    with closing(Spool(tmp_path, segment_bytes=4096)) as spool:
        assert (spool.pending_rows, spool.pending_bytes) == (230, on_disk - first_record)
        sink = Sink()
        await spool.replay(sink, batch_rows=20)
        assert (spool.pending_rows, spool.pending_bytes) == (0, 0)
    assert sink.rows == numbered(1, 50)[20:] + [row for i in range(2, 6) for row in numbered(i, 50)]


def test_one_process_per_spool_directory(tmp_path: Path) -> None:
    with closing(Spool(tmp_path)), pytest.raises(StorageError, match="used by another process"):
        Spool(tmp_path)
    Spool(tmp_path).close()


async def test_append_throughput_with_fsync_per_5000_row_batch(tmp_path: Path) -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    batches = [
        [(f"ev-{b}-{r}", t0 + timedelta(microseconds=r), f"door-{r % 50}", "door.open",
          "440305001" if r % 2 else None, {"state": "open", "battery": 87, "rssi": -61.5})
         for r in range(5000)]
        for b in range(30)
    ]
    with closing(Spool(tmp_path)) as spool:
        start = time.perf_counter()
        for rows in batches:
            spool.append("events", rows)
        append_s = time.perf_counter() - start
        start = time.perf_counter()

        async def discard(table: str, rows: list[Row]) -> None:
            return None
        replayed = await spool.replay(discard)
        replay_s = time.perf_counter() - start
    n = sum(len(rows) for rows in batches)
    assert replayed == n
    print(f"\nspool append: {n / append_s:,.0f} rows/s ({len(batches)} fsync'd batches of 5,000 rows); "
          f"replay: {n / replay_s:,.0f} rows/s")
    assert n / append_s > 20_000
