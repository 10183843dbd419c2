"""A private Mosquitto for tests: its own CA, server and client certificates, a password file.

:class:`PrivateMosquitto` starts ``/usr/sbin/mosquitto`` as a child process on free loopback ports with

- ``plain_port``: username/password, no TLS;
- ``tls_port``: TLS with ``require_certificate true`` (the client must show a certificate signed by the
  test CA) *and* username/password.

Every listener speaks MQTT 3.1.1 and MQTT 5. Certificates are made with the ``openssl`` CLI (RSA 2048,
SAN ``IP:127.0.0.1, DNS:localhost``); the password file with ``mosquitto_passwd``. The broker is killed
on :meth:`PrivateMosquitto.stop` (and by the context manager). Missing binaries fail loudly.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
OPENSSL = "/usr/bin/openssl"


class MosquittoError(RuntimeError):
    """The private broker could not be set up."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*cmd: str, cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise MosquittoError(f"{' '.join(cmd[:3])}... failed ({proc.returncode}): {proc.stderr[-2000:]}")


@dataclass(frozen=True, slots=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that did not sign the server: verification against it must fail
    rogue_cert: Path  # a client certificate signed by the other CA: the broker refuses it
    rogue_key: Path


def make_certificates(directory: Path) -> Certificates:
    """A test CA, a server certificate for 127.0.0.1/localhost and a client certificate (openssl CLI)."""
    for tool in (OPENSSL,):
        if shutil.which(tool) is None:
            raise MosquittoError(f"{tool} is missing (apt-get install openssl)")
    d = directory
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for ca in ("ca", "other-ca"):
        _run(OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN=sanwang test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)

    def issue(name: str, cn: str, ca: str, ext: str) -> None:
        _run(OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout",
             f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _run(OPENSSL, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", ext, cwd=d)

    issue("server", "localhost", "ca", "san.cnf")
    issue("client", "sanwang-hub", "ca", "client.cnf")
    issue("rogue", "rogue", "other-ca", "client.cnf")
    for key in d.glob("*.key"):
        key.chmod(0o644)  # mosquitto may drop privileges before reading them
    return Certificates(ca=d / "ca.crt", server_cert=d / "server.crt", server_key=d / "server.key",
                        client_cert=d / "client.crt", client_key=d / "client.key",
                        other_ca=d / "other-ca.crt", rogue_cert=d / "rogue.crt", rogue_key=d / "rogue.key")


class PrivateMosquitto:
    """A Mosquitto child process with password auth, a TLS listener requiring client certificates."""

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.users = users or {"hub": "s3cret-Hub-pass", "device": "dev1ce-pass"}
        self.plain_port = 0
        self.tls_port = 0
        self.host = "127.0.0.1"
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.certs: Certificates | None = None

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise MosquittoError("not started")
        return Path(self._dir.name)

    def url(self, user: str = "hub", password: str | None = None, *, tls: bool = False) -> str:
        secret = self.users.get(user, "") if password is None else password
        if tls:
            return f"mqtts://{user}:{secret}@{self.host}:{self.tls_port}"
        return f"mqtt://{user}:{secret}@{self.host}:{self.plain_port}"

    def start(self) -> PrivateMosquitto:
        for tool in (MOSQUITTO, MOSQUITTO_PASSWD):
            if not Path(tool).exists():
                raise MosquittoError(f"{tool} is missing (apt-get install mosquitto mosquitto-clients)")
        self._dir = tempfile.TemporaryDirectory(prefix="sanwang-mosquitto-")
        d = self.dir
        self.certs = make_certificates(d)
        passwd = d / "passwd"
        passwd.touch()
        for user, password in self.users.items():
            _run(MOSQUITTO_PASSWD, "-b", str(passwd), user, password, cwd=d)
        passwd.chmod(0o644)
        self.plain_port, self.tls_port = _free_port(), _free_port()
        c = self.certs
        conf = d / "mosquitto.conf"
        conf.write_text("\n".join([
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            "persistence false",
            "max_queued_messages 10000",
            f"log_dest file {d / 'mosquitto.log'}",
            *([f"user {getpass.getuser()}"] if os.geteuid() == 0 else []),
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            f"listener {self.plain_port} {self.host}",
            f"listener {self.tls_port} {self.host}",
            f"cafile {c.ca}",
            f"certfile {c.server_cert}",
            f"keyfile {c.server_key}",
            "require_certificate true",
            "use_identity_as_username false",
            "",
        ]))
        self._spawn()
        return self

    def _spawn(self) -> None:
        self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()

    def restart(self, down_s: float = 1.0) -> None:
        """Stop the broker process (every client is disconnected), wait, start it on the same ports."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(5)
        time.sleep(down_s)
        self._spawn()

    def _wait_ready(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                code, log = self._proc.returncode, self.log_text()
                self.stop()
                raise MosquittoError(f"mosquitto exited with {code}: {log[-2000:]}")
            try:
                for port in (self.plain_port, self.tls_port):
                    with socket.create_connection((self.host, port), timeout=0.2):
                        pass
                return
            except OSError:
                time.sleep(0.05)
        log = self.log_text()
        self.stop()
        raise MosquittoError(f"{log[-2000:]}\nmosquitto did not listen on {self.plain_port}/{self.tls_port} "
                             f"in {timeout_s}s")

    def log_text(self) -> str:
        """The broker's log so far (for assertion messages)."""
        try:
            return (self.dir / "mosquitto.log").read_text(errors="replace")
        except (OSError, MosquittoError):
            return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrivateMosquitto:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
