"""The publisher of the adapters benchmark's MQTT part: door/lock payloads into a broker, in its own process.

    python -m benchmarks.mqtt_publisher '<spec json>'

Spec: ``host``, ``port``, ``prefix`` (topic prefix), ``devices``, ``n`` (messages), ``qos``, ``rate``
(messages/s; 0 = as fast as the flow-control window allows), ``window`` (most messages published but not
yet received by the subscriber under test), ``clock`` (path of a float64 memory-mapped file of ``n + 1``
slots: slot 0 is written by the subscriber, the number of messages it received so far; slot ``1 + i`` is
written here, the ``time.monotonic()`` just before message ``i`` was handed to paho). ``CLOCK_MONOTONIC``
is system-wide on Linux, so the subscriber's receive times and these publish times compare directly.

The client is a few lines of MQTT 3.1.1 on a socket (not paho: paho spends ~140 µs of CPU per QoS 1
message here, which on two cores would be taken from the broker and the subscriber under test). Prints
``RESULT <json>`` (published, acknowledged, wall seconds, CPU seconds) when every message was sent (and, at
QoS 1, acknowledged by the broker). Kept free of hub imports: it starts fast and its CPU is its own.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import socket
import struct
import sys
import threading
import time
import uuid
from typing import Any

import numpy as np

LOCK_EVERY = 4  # every 4th device is a smart lock, the others door contacts
UNLOCK_ACTIONS = (("fingerprint_unlock", None), ("password_unlock", None), ("rfid_card_open", None),
                  ("unlock", "keypad"), ("unlock", "rf"), ("manual_unlock", "manual"))


def device_ids(devices: int) -> list[str]:
    return [f"{'lock' if i % LOCK_EVERY == 0 else 'door'}-{i:03d}" for i in range(devices)]


def door_lock_messages(prefix: str, devices: int, n: int, seed: int = 7) -> list[tuple[str, str, bytes]]:
    """``n`` Zigbee2MQTT messages ``(device id, topic, payload)``; each one makes exactly one hub event.

    Door contacts alternate open/closed (``door_opened``/``door_closed``); locks alternate an unlock with
    a method (``lock_unlocked``) and an auto-lock (``lock_locked``). Payloads carry the fields real
    converters publish (battery, voltage, link quality, tamper) so decoding costs what it costs in use.
    """
    rnd = random.Random(seed)
    ids = device_ids(devices)
    state = dict.fromkeys(ids, False)  # door open / lock unlocked after the last message
    out: list[tuple[str, str, bytes]] = []
    for _ in range(n):
        dev = ids[rnd.randrange(devices)]
        flip = state[dev] = not state[dev]
        if dev.startswith("door"):
            body: dict[str, Any] = {"battery": rnd.randint(60, 100), "battery_low": False,
                                    "contact": not flip, "linkquality": rnd.randint(40, 200), "tamper": False,
                                    "voltage": 3000}
        elif flip:
            action, source = UNLOCK_ACTIONS[rnd.randrange(len(UNLOCK_ACTIONS))]
            body = {"action": action, "action_source_name": source, "action_user": rnd.randint(1, 20),
                    "battery": rnd.randint(60, 100), "linkquality": rnd.randint(40, 200),
                    "lock_state": "unlocked", "state": "UNLOCK"}
        else:
            body = {"action": "auto_lock", "battery": rnd.randint(60, 100),
                    "linkquality": rnd.randint(40, 200), "lock_state": "locked", "state": "LOCK"}
        out.append((dev, f"{prefix}/{dev}", json.dumps(body, separators=(",", ":")).encode()))
    return out


def _packet(first: int, body: bytes) -> bytes:
    """An MQTT control packet: fixed header (type/flags, remaining length as a varint) and ``body``."""
    out, n = bytearray([first]), len(body)
    while True:
        n, digit = n // 128, n % 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


class Publisher:
    """A minimal MQTT 3.1.1 publisher on a plain socket (QoS 0/1). A device at the far edge needs no more,
    and it costs a few µs per message, so the cores go to the broker and the subscriber under test."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.acked = 0
        self.connected = threading.Event()
        self.error: str | None = None
        body = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _string(client_id)
        self.sock.sendall(_packet(0x10, body))  # CONNECT, clean session
        self._reader = threading.Thread(target=self._read, name="bench-publisher-acks", daemon=True)
        self._reader.start()
        if not self.connected.wait(10):
            raise SystemExit(f"publisher: no CONNACK from {host}:{port} ({self.error})")
        self.sock.settimeout(None)

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 2:  # CONNACK and PUBACK: 2-byte bodies, one-byte remaining length
                    kind, size = buf[0] >> 4, buf[1]
                    if len(buf) < 2 + size:
                        break
                    if kind == 2:
                        if buf[3] != 0:
                            self.error = f"CONNACK return code {buf[3]}"
                            return
                        self.connected.set()
                    elif kind == 4:
                        self.acked += 1
                    buf = buf[2 + size:]
        except OSError as exc:
            self.error = str(exc)

    def publish(self, topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        head = _string(topic) + (struct.pack("!H", packet_id) if qos else b"")
        self.sock.sendall(_packet(0x30 | (qos << 1), head + payload))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def publish(spec: dict[str, Any]) -> dict[str, Any]:
    n, qos, rate, window = int(spec["n"]), int(spec["qos"]), float(spec["rate"]), int(spec["window"])
    inflight = 100  # QoS 1 messages not yet acknowledged by the broker
    messages = door_lock_messages(spec["prefix"], int(spec["devices"]), n, int(spec.get("seed", 7)))
    clock = np.memmap(spec["clock"], dtype=np.float64, mode="r+", shape=(n + 1,))
    pub = Publisher(spec["host"], int(spec["port"]), f"bench-pub-{uuid.uuid4().hex[:8]}")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for i, (_, topic, payload) in enumerate(messages):
        if rate > 0:
            pause = t0 + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        while i - clock[0] >= window or (qos and i - pub.acked >= inflight):  # let the others catch up
            if pub.error:
                raise SystemExit(f"publisher: {pub.error}")
            time.sleep(0.0005)
        clock[1 + i] = time.monotonic()
        pub.publish(topic, payload, qos, i % 65535 + 1)
    deadline = time.monotonic() + 30
    while qos and pub.acked < n and time.monotonic() < deadline:
        time.sleep(0.001)
    elapsed = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    clock.flush()
    pub.close()
    return {"published": n, "acked": pub.acked if qos else None, "wall_s": elapsed,
            "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)}


def main(argv: list[str]) -> int:
    result = publish(json.loads(argv[0]))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
