"""ACME village access controller (门禁控制器) → sanwang-hub events. The whole adapter is this file.

The controller speaks JSON over HTTP (as many village 小电网 access systems do):

- ``GET /api/v1/info`` → ``{"model": ..., "serial": ..., "firmware": ..., "doors": {...}}``
- ``GET /api/v1/events?after=<seq>&wait=<s>`` → ``{"events": [{"seq": 7, "type": "door_open",
  "door": "1", "time": 1763790000.5, "method": "card"}, ...]}`` (a long poll: it answers as soon as
  there is an event, or after ``wait`` seconds with an empty list)
- every request carries ``Authorization: Bearer <token>``; a wrong token is HTTP 401; while the
  controller boots it answers HTTP 503.

Config, as a user writes it in the hub's YAML::

    sources:
      - kind: acme-gate
        id: gate-north
        grid: "440111001001"
        url: http://10.30.0.20:8080
        token: ${ACME_GATE_TOKEN}
        cameras: {"1": [cam-north]}       # door number -> cameras that see it (for fusion)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic import Field, SecretStr

from adapters.base import Adapter, AdapterConfig, Capability, DeviceInfo
from hub.errors import AdapterAuthError, AdapterConnectError, AdapterError, AdapterNotReady
from hub.events import EventKind, SourceEvent

log = logging.getLogger(__name__)

# The controller's event types → the hub's typed events (and extra data).
EVENT_TYPES: dict[str, tuple[EventKind, dict[str, Any]]] = {
    "door_open": (EventKind.DOOR_OPENED, {}),
    "door_close": (EventKind.DOOR_CLOSED, {}),
    "door_forced": (EventKind.DOOR_FORCED, {"reason": "device_alarm"}),
    "door_held": (EventKind.DOOR_HELD_OPEN, {"reason": "device"}),
    "unlock": (EventKind.LOCK_UNLOCKED, {}),
    "denied_limit": (EventKind.LOCK_FAILED_ATTEMPTS, {"reason": "device_limit"}),
    "tamper": (EventKind.TAMPER, {}),
}


class AcmeGateConfig(AdapterConfig):
    kind: Literal["acme-gate"] = Field(..., description="acme-gate")
    url: str = Field(..., pattern=r"^https?://", description="Base URL of the controller.")
    token: SecretStr = Field(..., description="API token (never logged).")
    wait_s: float = Field(20.0, gt=0, le=120, description="Long-poll wait.")
    timeout_s: float = Field(5.0, gt=0, le=60, description="Connect/answer timeout on top of wait_s.")
    cameras: dict[str, list[str]] = Field(default_factory=dict, description="Door number -> camera ids.")


# No @register here: the entry point in pyproject.toml is what registers an out-of-tree adapter.
class AcmeGate(Adapter[AcmeGateConfig]):
    config_model = AcmeGateConfig
    capabilities = frozenset({Capability.EVENTS})
    description = "ACME village access controller (JSON long-poll over HTTP)"

    _session: aiohttp.ClientSession | None = None
    _after = 0  # last event sequence number reported: nothing twice, across reconnects and restarts

    @property
    def _cursor_file(self) -> Path | None:
        """Where the cursor survives a hub restart (the hub lends each source a state directory)."""
        directory = self.context.state_dir
        return directory / "cursor" if directory is not None else None

    async def _get(self, path: str, **params: Any) -> dict[str, Any]:
        """One request; failures become the hub's adapter errors (nothing else escapes)."""
        session = self._session or aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.config.wait_s + self.config.timeout_s)
        headers = {"Authorization": f"Bearer {self.config.token.get_secret_value()}"}
        try:
            async with session.get(self.config.url.rstrip("/") + path, params=params, headers=headers,
                                   timeout=timeout) as resp:
                if resp.status in (401, 403):
                    raise AdapterAuthError(f"{self.id}: token refused (HTTP {resp.status})")
                if resp.status == 503:
                    raise AdapterNotReady(f"{self.id}: the controller is starting (HTTP 503)")
                if resp.status != 200:
                    raise AdapterError(f"{self.id}: HTTP {resp.status} from {path}")
                body = await resp.json()
                if not isinstance(body, dict):
                    raise AdapterError(f"{self.id}: {path} did not return a JSON object")
                return body
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise AdapterConnectError(f"{self.id}: controller unreachable: {type(exc).__name__}") from None
        except (aiohttp.ContentTypeError, ValueError) as exc:
            raise AdapterError(f"{self.id}: bad answer from {path}: {type(exc).__name__}") from None
        finally:
            if session is not self._session:
                await session.close()

    async def probe(self) -> DeviceInfo:
        info = await self._get("/api/v1/info")
        return DeviceInfo(self.id, "acme-gate", self.capabilities, manufacturer="ACME",
                          model=str(info.get("model", "")), firmware=str(info.get("firmware", "")),
                          serial=str(info.get("serial", "")), extra={"doors": info.get("doors", {})})

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        path = self._cursor_file
        text = await asyncio.to_thread(lambda: path.read_text() if path and path.exists() else "")
        if text.strip().isdecimal():
            self._after = int(text)
        else:  # first start: begin at the controller's newest event, not at its whole history
            body = await self._get("/api/v1/events", after=0, wait=0)
            seqs = [e.get("seq") for e in body.get("events") or [] if isinstance(e, dict)]
            self._after = max((s for s in seqs if type(s) is int), default=0)

    async def _save_cursor(self) -> None:
        path = self._cursor_file
        if path is not None:
            def write() -> None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(str(self._after))
                tmp.replace(path)  # atomic: a crash leaves the old cursor or the new one

            await asyncio.to_thread(write)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await self._save_cursor()  # also when stopped in the middle of a batch
            await session.close()

    async def events(self) -> AsyncIterator[SourceEvent]:
        delay = 1.0
        while True:  # reconnect forever: a controller that reboots must not stop the adapter
            started = time.monotonic()
            try:
                body = await self._get("/api/v1/events", after=self._after, wait=self.config.wait_s)
                delay = 1.0
            except AdapterAuthError:
                raise  # the hub reports it and waits minutes, not seconds
            except AdapterError as exc:
                log.warning("%s; retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            raw_events = body.get("events")
            for raw in raw_events if isinstance(raw_events, list) else []:
                event = self._event(raw)
                if event is not None:
                    yield event
            await self._save_cursor()
            if not raw_events and time.monotonic() - started < 0.5:
                await asyncio.sleep(0.5)  # a controller that ignores `wait` must not make this spin

    def _event(self, raw: Any) -> SourceEvent | None:
        seq = raw.get("seq") if isinstance(raw, dict) else None
        if type(seq) is not int or seq <= self._after:  # malformed, or already reported
            if type(seq) is not int:
                log.warning("%s: ignoring malformed event %.200r", self.id, raw)
            return None
        self._after = seq
        mapped = EVENT_TYPES.get(str(raw.get("type")))
        if mapped is None:
            return None  # an event type the hub has no use for
        kind, extra = mapped
        door = str(raw.get("door", ""))
        data: dict[str, Any] = {"door": door, "seq": seq, **extra}
        if raw.get("method"):
            data["method"] = str(raw["method"])
        if self.config.cameras.get(door):
            data["cameras"] = list(self.config.cameras[door])
        at = raw.get("time")
        stamp = {"at": float(at)} if type(at) in (int, float) and 0 < at < 4e9 else {}  # epoch seconds
        return SourceEvent(source_id=f"{self.id}.door{door}" if door else self.id, kind=kind,
                           grid=self.config.grid or None, data=data, **stamp)

    def diagnostics(self) -> dict[str, Any]:
        return {**super().diagnostics(), "last_seq": self._after}
