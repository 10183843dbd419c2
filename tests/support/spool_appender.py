"""Append numbered batches to a spool until killed (the crash tests' victim).

``python -m tests.support.spool_appender DIR [BIG]`` prints ``i`` after ``append`` of ``planned(i, BIG)``
returned. With ``BIG`` > 0, batch 5 is ``BIG`` ordinary batches in one (megabytes, so that a kill can
land inside its ``write``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.storage.spool import Spool

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def batch(i: int) -> list[tuple[Any, ...]]:
    """Batch ``i``: 300 to 2,100 event-like rows, every value derived from ``i`` and the row number."""
    return [
        (f"ev-{i}-{r}", T0 + timedelta(seconds=i, microseconds=r), f"door-{r % 13}", "door.open",
         None if r % 3 else "440305001", {"batch": i, "row": r, "name": "张三" if r % 2 else "x" * (r % 50)})
        for r in range(300 * (i % 7 + 1))
    ]


def planned(i: int, big: int = 0) -> list[tuple[Any, ...]]:
    if big and i == 5:
        return [row for n in range(1000, 1000 + big) for row in batch(n)]
    return batch(i)


def main() -> None:
    spool = Spool(Path(sys.argv[1]), segment_bytes=256 << 10)
    big = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    i = 0
    while True:
        spool.append("events", planned(i, big))
        print(i, flush=True)
        i += 1


if __name__ == "__main__":
    main()
