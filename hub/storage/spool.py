"""Local write-ahead spool for rows the database cannot take right now: at-least-once, in order.

``<seq>.seg`` segments hold one record per appended batch (``_HEADER``, then JSON with a letter per
column naming how to rebuild what JSON cannot carry: ``_DECODERS``). ``ack`` holds replay progress
(segment, record offset, rows of it written), replaced atomically after each written chunk: a crash
before it only writes that chunk again (the database inserts ON CONFLICT DO NOTHING). ``lock`` is
flock'd while open. Opening cuts a torn tail (an ``append`` that never returned) with a warning, and
quarantines a segment damaged elsewhere as ``<seq>.seg.corrupt`` (an error; the records before the
damage are still replayed). ``max_bytes`` bounds the segment files on disk.

Threads: methods take one internal lock, so ``append`` may run in a worker thread while ``replay``
runs on the event loop (doing its disk work in worker threads). One ``replay`` at a time.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb

from hub.errors import StorageError

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
_MAGIC = b"SPL1"
_HEADER = struct.Struct("<4sIIII")  # magic, payload length, rows, payload crc32, crc32 of the first 16 bytes
_ACK = struct.Struct("<QQQI")  # segment seq, record offset, rows of it written, crc32 of the first 24 bytes
_PLAIN = frozenset({str, int, float, bool, type(None), dict, list})
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_DECODERS: dict[str, Callable[[Any], Any]] = {  # "j": plain JSON
    "d": datetime.fromisoformat, "z": lambda v: datetime.fromisoformat(v[0]).astimezone(ZoneInfo(v[1])),
    "D": date.fromisoformat, "b": base64.b64decode, "J": Jsonb,
}


class SpoolFull(StorageError):
    """Appending this batch would take the spool past its ``max_bytes``; nothing was written."""


def _encode_value(value: Any, column: int) -> tuple[str, Any]:
    if isinstance(value, datetime):
        zone = value.tzinfo
        if isinstance(zone, ZoneInfo) and zone.key:
            return "z", [value.isoformat(), zone.key]
        return "d", value.isoformat()
    if isinstance(value, date):
        return "D", value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "b", base64.b64encode(value).decode("ascii")
    if isinstance(value, Jsonb):
        return "J", value.obj
    if isinstance(value, str | int | float | dict | list):  # subclasses such as StrEnum; inside dict/list
        return "j", value  # JSON rules apply, as for Jsonb (tuples become lists, keys strings)
    raise TypeError(f"spool cannot store column {column} of type {type(value).__name__}")


def _encode(table: str, rows: Sequence[Row]) -> bytes:
    out: list[list[Any]] = []
    for row in rows:
        codes, values = "", list[Any]([None])
        for i, value in enumerate(row):
            if type(value) in _PLAIN:
                codes += "j"
                values.append(value)
            else:
                code, plain = _encode_value(value, i)
                codes += code
                values.append(plain)
        values[0] = codes
        out.append(values)
    return _ENCODER.encode([table, out]).encode("utf-8", "surrogatepass")


def _decode(payload: bytes) -> tuple[str, list[Row]]:
    table, encoded = json.loads(payload.decode("utf-8", "surrogatepass"))
    plans: dict[str, list[tuple[int, Callable[[Any], Any]]]] = {}
    rows: list[Row] = []
    for values in encoded:
        codes = values[0]
        plan = plans.get(codes)
        if plan is None:
            plan = plans[codes] = [(i, _DECODERS[c]) for i, c in enumerate(codes, 1) if c != "j"]
        for i, decode in plan:
            values[i] = decode(values[i])
        rows.append(tuple(values[1:]))
    return str(table), rows


def _read_record(f: BinaryIO, size: int) -> tuple[int, bytes] | str:
    """The (rows, payload) of the record at the file position, or "torn" / "corrupt"."""
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return "torn"  # a header cut short
    magic, length, rows, crc, head_crc = _HEADER.unpack(head)
    if magic != _MAGIC or zlib.crc32(head[:16]) != head_crc:
        return "corrupt" if (head + f.read()).strip(b"\0") else "torn"  # zeros: space the crash left
    end = f.tell() + length
    if end > size:
        return "torn"  # the header is sound, the payload was cut short
    payload = f.read(length)
    if zlib.crc32(payload) != crc:
        return "torn" if end == size else "corrupt"
    return rows, payload


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int
    start: int = 0  # first byte not fully acknowledged
    rows: int = 0  # rows not yet acknowledged
    fd: int | None = None
    sealed: bool = False  # never append again (rotated, quarantined, or a failed write left bytes)


@dataclass
class _Batch:
    seq: int
    offset: int
    end: int
    skip: int
    table: str
    rows: list[Row]


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int = 1 << 30, segment_bytes: int = 64 << 20) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._replaying = False
        self._segments: list[_Segment] = []
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StorageError(f"spool directory {self.directory} is used by another process") from None
            self._open()
        except BaseException:
            self.close()
            raise

    @property
    def pending_rows(self) -> int:
        return sum(seg.rows for seg in list(self._segments))  # list(): a snapshot, for other threads

    @property
    def pending_bytes(self) -> int:  # on disk, of the batches not fully acknowledged
        return sum(seg.size - seg.start for seg in list(self._segments))

    def append(self, table: str, rows: Sequence[Row]) -> None:
        """Write one batch and fsync it. Raises :class:`SpoolFull` (nothing written) when over the bound."""
        if not rows:
            return
        payload = _encode(table, rows)
        head = struct.pack("<4sIII", _MAGIC, len(payload), len(rows), zlib.crc32(payload))
        record = head + struct.pack("<I", zlib.crc32(head)) + payload
        with self._lock:
            if self._lock_fd is None:
                raise RuntimeError("spool is closed")
            if (disk := sum(seg.size for seg in self._segments)) + len(record) > self.max_bytes:
                raise SpoolFull(f"spool {self.directory} holds {disk} bytes; a batch of "
                                f"{len(record)} bytes would pass max_bytes={self.max_bytes}")
            seg = self._writable_segment(len(record))
            assert seg.fd is not None
            try:
                view = memoryview(record)
                while view:
                    view = view[os.write(seg.fd, view):]
                os.fdatasync(seg.fd)
            except BaseException:
                try:  # leave no partial record behind
                    os.ftruncate(seg.fd, seg.size)
                    os.fsync(seg.fd)
                except OSError:
                    log.exception("spool segment %s: could not cut off a failed append", seg.path.name)
                    seg.sealed = True
                    self._close_fd(seg)
                raise
            seg.size += len(record)
            seg.rows += len(rows)

    async def replay(self, write: Callable[[str, list[Row]], Awaitable[None]], *,
                     batch_rows: int = 5000) -> int:
        """Feed every pending batch, oldest first, to ``write``; acknowledge each chunk after it returned.

        When ``write`` raises, replay stops and re-raises; that chunk comes first next time.
        Batches appended while replaying are replayed too. Returns the number of rows written.
        """
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        if self._replaying:
            raise RuntimeError("spool replay is already running")
        self._replaying = True
        done = 0
        try:
            while (batch := await asyncio.to_thread(self._next_batch)) is not None:
                position = batch.skip
                while position < len(batch.rows):
                    chunk = batch.rows[position:position + batch_rows]
                    await write(batch.table, chunk)
                    position += len(chunk)
                    done += len(chunk)
                    await asyncio.to_thread(self._acknowledge, batch, position, len(chunk))
        finally:
            self._replaying = False
        if done:
            log.info("spool %s: replayed %d rows, %d rows pending", self.directory, done, self.pending_rows)
        return done

    def close(self) -> None:
        with self._lock:
            for seg in self._segments:
                self._close_fd(seg)
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def _open(self) -> None:
        self._ack = self._load_ack()
        seqs = [self._ack[0]]
        for path in sorted(self.directory.glob("*.seg*")):
            if path.name.endswith(".tmp"):
                path.unlink()  # a quarantine copy a crash interrupted; the original is still there
            elif path.name.split(".")[0].isdigit():
                seqs.append(int(path.name.split(".")[0]))  # .corrupt files too: never reuse a number
                if path.suffix == ".seg":
                    self._segments.append(_Segment(int(path.stem), path, path.stat().st_size))
        self._next_seq = max(seqs) + 1
        for seg in list(self._segments):
            self._open_segment(seg, last=seg is self._segments[-1])
        if self.pending_rows:
            log.info("spool %s: %d rows (%d bytes) pending in %d segments", self.directory,
                     self.pending_rows, self.pending_bytes, len(self._segments))

    def _load_ack(self) -> tuple[int, int, int]:
        path = self.directory / "ack"
        data = path.read_bytes() if path.exists() else _ACK.pack(0, 0, 0, zlib.crc32(bytes(24)))
        seq, offset, skip, crc = _ACK.unpack(data) if len(data) == _ACK.size else (0, 0, 0, -1)
        if zlib.crc32(data[:-4]) == crc:
            return seq, offset, skip
        log.warning("spool %s: damaged ack file; replaying all segments from the start", self.directory)
        return 0, 0, 0

    def _open_segment(self, seg: _Segment, *, last: bool) -> None:
        ack_seq, ack_offset, skip = self._ack
        if seg.seq < ack_seq or (seg.seq == ack_seq and seg.size <= ack_offset):
            self._delete(seg)  # fully acknowledged; a crash came before its deletion
            return
        seg.start = ack_offset if seg.seq == ack_seq else 0
        record: tuple[int, bytes] | str = ""
        with seg.path.open("rb") as f:
            end = f.seek(seg.start)
            while end < seg.size and not isinstance(record := _read_record(f, seg.size), str):
                written = min(skip, record[0]) if (seg.seq, end) == (ack_seq, ack_offset) else 0
                seg.rows += record[0] - written
                end = f.tell()
        if end < seg.size and record == "torn" and last:
            log.warning("spool segment %s: dropped a torn tail of %d bytes (an append that never returned)",
                        seg.path.name, seg.size - end)
            with seg.path.open("r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
            seg.size = end
        if end < seg.size:
            self._quarantine(seg, end)

    def _writable_segment(self, record_bytes: int) -> _Segment:
        seg = self._segments[-1] if self._segments else None
        if seg and not seg.sealed and (seg.size == 0 or seg.size + record_bytes <= self.segment_bytes):
            if seg.fd is None:
                seg.fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            return seg
        if seg is not None:
            seg.sealed = True
            self._close_fd(seg)
        path = self.directory / f"{self._next_seq:016d}.seg"
        seg = _Segment(self._next_seq, path, 0)
        seg.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._next_seq += 1
        self._segments.append(seg)
        _fsync_dir(self.directory)
        log.debug("spool %s: new segment %s", self.directory, path.name)
        return seg

    def _next_batch(self) -> _Batch | None:
        with self._lock:
            if self._lock_fd is None:
                raise RuntimeError("spool is closed")
            while self._segments:
                seg = self._segments[0]
                if seg.start >= seg.size:
                    if seg is self._segments[-1]:
                        return None
                    self._delete(seg)
                    continue
                with seg.path.open("rb") as f:
                    f.seek(seg.start)
                    record = _read_record(f, seg.size)
                    end = f.tell()
                if isinstance(record, str):  # damaged after it was opened
                    self._quarantine(seg, seg.start)
                    continue
                skip = self._ack[2] if self._ack[:2] == (seg.seq, seg.start) else 0
                break
            else:
                return None
        table, rows = _decode(record[1])  # outside the lock: appends need not wait for it
        return _Batch(seg.seq, seg.start, end, skip, table, rows)

    def _acknowledge(self, batch: _Batch, position: int, rows: int) -> None:
        with self._lock:
            seg = self._segments[0] if self._segments else None
            if seg is None or (seg.seq, seg.start) != (batch.seq, batch.offset):
                return  # quarantined meanwhile
            whole = position >= len(batch.rows)
            ack = (batch.seq, batch.end, 0) if whole else (batch.seq, batch.offset, position)
            self._write_ack(ack)  # first: should it fail, the chunk is simply replayed again
            self._ack = ack
            seg.rows -= rows
            if whole:
                seg.start = batch.end
                if seg.start >= seg.size:  # even the one appended to: the next append starts a new one
                    self._delete(seg)

    def _write_ack(self, ack: tuple[int, int, int]) -> None:
        data = _ACK.pack(*ack, 0)[:-4]
        _write_durably(self.directory / "ack.tmp", data + struct.pack("<I", zlib.crc32(data)))
        os.replace(self.directory / "ack.tmp", self.directory / "ack")
        _fsync_dir(self.directory)

    def _close_fd(self, seg: _Segment) -> None:
        if seg.fd is not None:
            os.close(seg.fd)
            seg.fd = None

    def _delete(self, seg: _Segment) -> None:
        self._close_fd(seg)
        seg.path.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        self._segments.remove(seg)

    def _quarantine(self, seg: _Segment, bad: int) -> None:
        """Keep ``seg`` whole as ``.corrupt``; the pending records before ``bad`` stay to be replayed."""
        self._close_fd(seg)
        seg.sealed = True
        target = seg.path.with_name(seg.path.name + ".corrupt")
        if target.exists():  # quarantined before (then its first records were kept, now damaged too)
            target = seg.path.with_name(f"{seg.path.name}.{time.time_ns()}.corrupt")
        log.error("spool segment %s is corrupt at byte %d of %d: kept as %s; the %d bytes from there on "
                  "are not replayed", seg.path.name, bad, seg.size, target.name, seg.size - bad)
        if bad > seg.start:
            tmp = seg.path.with_name(seg.path.name + ".tmp")
            with seg.path.open("rb") as src:
                _write_durably(tmp, src.read(bad))
            os.link(seg.path, target)
            os.replace(tmp, seg.path)
            seg.size = bad
        else:
            os.replace(seg.path, target)
            self._segments.remove(seg)
        _fsync_dir(self.directory)
