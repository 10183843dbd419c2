"""Small measuring tools shared by the benchmark trials: CPU clocks, per-thread CPU, percentiles."""

from __future__ import annotations

import os
import platform
import resource
import threading
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s() -> float:
    """User + system CPU seconds of this process (all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pid_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of another process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds per native thread id of this process."""
    out: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / _TICKS
    return out


def thread_groups(prefixes: dict[str, str]) -> dict[int, str]:
    """Native thread id -> group, for Python threads whose name starts with one of ``prefixes``.

    Threads not listed (native pools of FFmpeg and ONNX Runtime/torch) are grouped by the caller.
    """
    groups: dict[int, str] = {}
    for t in threading.enumerate():
        if t.native_id is None:
            continue
        for prefix, group in prefixes.items():
            if t.name.startswith(prefix):
                groups[t.native_id] = group
                break
    return groups


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    wall: float
    process: float
    threads: dict[int, float]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100, nearest-rank on the sorted values); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def machine_description() -> str:
    """CPU model, cores usable by this process, memory and the OS, in one line."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
                break
    except OSError:
        pass
    return f"{model}, {cores} cores usable{mem}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
