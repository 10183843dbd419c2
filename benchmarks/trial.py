"""Run one trial (hub or baseline) in a child process and collect its result.

The child prints ``PHASE <name> <time>`` lines and a final ``RESULT <json>``. On the ``window``
and ``end`` phases this side samples the CPU of the RTSP server process, so the cost of the
"cameras" is reported beside (not inside) the system under test.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from benchmarks.measure import load_average, pid_cpu_s

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]


class TrialError(RuntimeError):
    """A trial child failed or produced no result."""


def run_child(module: str, spec: dict[str, Any], *, server_pid: int | None, timeout_s: float,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m module '<spec json>'``; returns its RESULT plus server CPU and load."""
    cmd = [sys.executable, "-m", module, json.dumps(spec)]
    child_env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false",
                 "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env)
    stderr: deque[str] = deque(maxlen=60)

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr.append(line.rstrip())

    threading.Thread(target=drain, name="trial-stderr", daemon=True).start()
    marks: dict[str, tuple[float, float | None]] = {}
    result: dict[str, Any] | None = None
    deadline = time.monotonic() + timeout_s
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if line.startswith("PHASE "):
                name = line.split()[1]
                marks[name] = (time.monotonic(), pid_cpu_s(server_pid) if server_pid else None)
                if name == "window":
                    marks["load"] = (load_average()[0], None)
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if result is None:
        raise TrialError(f"{module} exited with {proc.returncode} without a result:\n" + "\n".join(stderr))
    if "window" in marks and "end" in marks:
        (t0, c0), (t1, c1) = marks["window"], marks["end"]
        if c0 is not None and c1 is not None:
            result["server_cores"] = round((c1 - c0) / max(1e-6, t1 - t0), 3)
        result["load_avg_1m"] = marks["load"][0]
    result["stderr_tail"] = list(stderr)[-8:]
    return result
