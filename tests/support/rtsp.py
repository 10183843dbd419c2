"""Run scripts/rtsp_server.py (GStreamer, Debian's /usr/bin/python3) as a child process for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import quote

SERVER_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


class RtspServerError(RuntimeError):
    """The RTSP server child did not come up."""


class RtspServer:
    """A real RTSP server serving looping H.264 clips (and optional test patterns).

    With ``user``/``password`` every mount requires authentication: HTTP Basic or, with
    ``auth="digest"``, Digest (Basic is then refused).

    Use as a context manager or call :meth:`start`/:meth:`stop`. The first start picks a free
    port (unless ``port`` is given); :meth:`restart` keeps it, so reader URLs stay valid.
    The child is always killed on exit, and dies by itself if this process dies (it watches
    its stdin pipe).
    """

    def __init__(
        self,
        mounts: Mapping[str, Path | str],
        *,
        port: int = 0,
        user: str | None = None,
        password: str | None = None,
        auth: Literal["basic", "digest"] = "basic",
        test_patterns: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        ready_timeout: float = 10.0,
    ) -> None:
        self.mounts = {name: str(path) for name, path in mounts.items()}
        self.port = port
        self.user = user
        self.password = password
        self.auth = auth
        self.test_patterns = test_patterns
        self.host = host
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._count_lock = threading.Lock()
        self._connections = 0
        self._stderr: deque[str] = deque(maxlen=200)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> RtspServer:
        if self._proc is not None:
            raise RtspServerError("already running")
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--host", self.host, "--port", str(self.port),
               "--watch-stdin"]
        for name, path in self.mounts.items():
            cmd += ["--mount", f"{name}={path}"]
        for name in self.test_patterns:
            cmd += ["--test-pattern", name]
        if self.user is not None:
            cmd += ["--user", self.user, "--password", self.password or "", "--auth", self.auth]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "GST_DEBUG": os.environ.get("GST_DEBUG", "1")},
        )
        self._proc = proc
        try:
            self.port = self._wait_ready(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> int:
        ready = threading.Event()
        port: list[int] = []
        stdout: deque[str] = deque(maxlen=200)
        self._stderr = deque(maxlen=200)

        def read_stdout() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                if line == "CONNECT":
                    with self._count_lock:
                        self._connections += 1
                    continue
                stdout.append(line)
                if line.startswith("READY port="):
                    port.append(int(line.split("=", 1)[1]))
                    ready.set()

        def read_stderr() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                self._stderr.append(raw.decode(errors="replace").rstrip())

        # Keep draining both pipes for the child's whole life so it never blocks on a full pipe.
        for target in (read_stdout, read_stderr):
            threading.Thread(target=target, name=f"rtsp-server-{target.__name__}", daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while not ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        if ready.is_set():
            return port[0]
        self._kill(proc)
        time.sleep(0.1)  # let the drain threads pick up the last lines
        raise RtspServerError(
            f"RTSP server did not print READY within {self.ready_timeout:.0f} s "
            f"(exit code {proc.returncode}).\nstdout:\n" + "\n".join(stdout)
            + "\nstderr:\n" + "\n".join(self._stderr)
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            self._kill(proc)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, optionally stay down ``down_for`` seconds, start again on the same port."""
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        if proc.stdin is not None:
            proc.stdin.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def connections(self) -> int:
        """RTSP client connections accepted since this object was created (across restarts)."""
        with self._count_lock:
            return self._connections

    @property
    def stderr_tail(self) -> str:
        """The last lines the server wrote to stderr (for failure messages)."""
        return "\n".join(self._stderr)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    def url(self, mount: str, user: str | None = None, password: str | None = None, *,
            credentials: bool = True) -> str:
        """``rtsp://[user:password@]host:port/mount``.

        Without explicit ``user``/``password`` the server's own credentials are embedded
        (``credentials=False`` leaves them out, e.g. to test a missing login).
        """
        if user is None and password is None and credentials:
            user, password = self.user, self.password
        auth = ""
        if user is not None:
            auth = quote(user, safe="")
            if password is not None:
                auth += ":" + quote(password, safe="")
            auth += "@"
        return f"rtsp://{auth}{self.host}:{self.port}/{mount}"
