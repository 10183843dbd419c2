"""The adapter conformance suite: what every adapter, in-tree or third-party, must do (needs pytest).

Use it by subclassing :class:`AdapterConformance` in a test module and providing one fixture::

    from adapters.conformance import AdapterCase, AdapterConformance

    class TestAcmeGate(AdapterConformance):
        @pytest.fixture
        async def adapter_case(self, controller):         # your fixture starting the real peer
            return AdapterCase(
                config={"kind": "acme-gate", "id": "gate-1", "url": controller.url, "token": TOKEN},
                secrets=[TOKEN],
                trigger=controller.open_door,            # makes the device emit an event
                restart_peer=controller.reboot,          # optional: events() must survive it
                bad_auth={"token": "wrong-token"},       # config overrides the device refuses
                unreachable={"url": "http://127.0.0.1:9"},
            )

The suite's tests are ``async def``: run pytest with pytest-asyncio in auto mode
(``asyncio_mode = "auto"`` under ``[tool.pytest.ini_options]``).

The suite checks, against the real peer the fixture starts: the config round-trips and rejects
unknown keys; the adapter is registered under its kind; ids are stable and unique; probe() describes
the device with declared capabilities only; events are typed :class:`SourceEvent` s; ``events()``
survives a restart of the peer (when the case can restart it); streams resolve (cameras); errors map to
the hub's hierarchy; cancelling ``events()`` finishes promptly and leaves no task behind; nothing blocks
the event loop; secrets never appear in repr, diagnostics, errors or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.base import Adapter, AdapterConfig, AdapterContext, Capability, DeviceInfo, StreamSet
from adapters.registry import adapter_class, parse_config
from hub.config_loader import parse_config as parse_hub_config
from hub.errors import (
    AdapterAuthError,
    AdapterConnectError,
    AdapterError,
    AdapterNotReady,
    AdapterUnsupported,
    ConfigError,
    HubError,
)
from hub.events import EventKind, SourceEvent

_SECRET_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)


@dataclass
class AdapterCase:
    """What the suite needs to exercise one adapter against its real peer."""

    config: Mapping[str, Any]  # the mapping a user writes in YAML (must include kind and id)
    secrets: list[str] = field(default_factory=list)  # values that must never be shown
    trigger: Callable[[], Awaitable[None]] | None = None  # make the peer emit >= 1 event
    bad_auth: Mapping[str, Any] | None = None  # config overrides the peer refuses (wrong password)
    unreachable: Mapping[str, Any] | None = None  # config overrides pointing at nothing
    restart_peer: Callable[[], Awaitable[None]] | None = None  # the device reboots / drops connections
    no_restart_reason: str = ""  # an EVENTS case without restart_peer must say why it cannot have one
    context: Callable[[], AdapterContext] | None = None  # e.g. lend the hub's MQTT client
    event_timeout_s: float = 10.0
    max_loop_lag_s: float = 0.25  # the longest the event loop may stall while the adapter works
    section: str = "sources"  # where it goes in the hub's YAML: "cameras" or "sources"

    def build(self, **overrides: Any) -> Adapter[Any]:
        cfg = parse_config({**self.config, **overrides})
        ctx = self.context() if self.context is not None else None
        return adapter_class(cfg.kind)(cfg, ctx)


class LoopLagMonitor:
    """Measures the longest time the event loop did not get to run a 10 ms ticker."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.max_lag_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.period_s)
            self.max_lag_s = max(self.max_lag_s, time.perf_counter() - t0 - self.period_s)

    async def __aenter__(self) -> LoopLagMonitor:
        self._task = asyncio.create_task(self._tick(), name="loop-lag-monitor")
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def first_event(adapter: Adapter[Any], case: AdapterCase, count: int = 1) -> list[SourceEvent]:
    """Start events(), pull the trigger, return the first ``count`` events."""
    got: list[SourceEvent] = []
    started = asyncio.Event()

    async def consume() -> None:
        iterator = adapter.events()
        started.set()
        async for event in iterator:
            got.append(event)
            if len(got) >= count:
                return

    task = asyncio.create_task(consume(), name="conformance-events")
    try:
        await started.wait()
        await asyncio.sleep(0.3)  # let the adapter subscribe before the device speaks
        deadline = time.monotonic() + case.event_timeout_s
        while not task.done() and time.monotonic() < deadline:
            if case.trigger is not None:
                await case.trigger()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout=min(2.0, case.event_timeout_s))
        assert task.done(), f"no event within {case.event_timeout_s} s after trigger"
        await task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return got


class AdapterConformance:
    """Subclass and provide an ``adapter_case`` fixture returning :class:`AdapterCase`."""

    @pytest.fixture
    def adapter_case(self) -> AdapterCase:
        raise NotImplementedError("provide an adapter_case fixture")

    # -- config -----------------------------------------------------------------------------
    def test_config_round_trip(self, adapter_case: AdapterCase) -> None:
        cfg = parse_config(adapter_case.config)
        assert isinstance(cfg, AdapterConfig)
        cls = adapter_class(cfg.kind)
        assert isinstance(cfg, cls.config_model)
        again = cls.config_model.model_validate(cfg.model_dump())
        assert again == cfg
        assert cls.config_model.model_config.get("extra") == "forbid"

    def test_unknown_keys_rejected(self, adapter_case: AdapterCase) -> None:
        with pytest.raises(ValidationError) as err:
            parse_config({**adapter_case.config, "no_such_option": 1})
        assert "no_such_option" in str(err.value)
        # through the hub's YAML loader: a located ConfigError naming the key
        import yaml

        text = yaml.safe_dump({adapter_case.section: [{**adapter_case.config, "no_such_option": 1}]},
                              allow_unicode=True)
        with pytest.raises(ConfigError) as located:
            parse_hub_config(text, "case.yaml")
        assert located.value.line is not None
        assert "no_such_option" in (located.value.field or "")

    def test_registered_under_its_kind(self, adapter_case: AdapterCase) -> None:
        cfg = parse_config(adapter_case.config)
        cls = adapter_class(cfg.kind)
        assert issubclass(cls, Adapter)
        assert cls.capabilities, "declare capabilities on the class"
        assert all(isinstance(c, Capability) for c in cls.capabilities)

    # -- behaviour against the real peer ---------------------------------------------------
    async def test_probe_describes_device(self, adapter_case: AdapterCase) -> None:
        adapter = adapter_case.build()
        async with LoopLagMonitor() as lag:
            first = await adapter.probe()
            second = await adapter.probe()
        assert isinstance(first, DeviceInfo)
        assert first.id == second.id == adapter.id, "ids must be stable"
        assert first.capabilities <= type(adapter).capabilities, "probe reported undeclared capabilities"
        json.dumps(first.to_json())
        assert lag.max_lag_s < adapter_case.max_loop_lag_s, f"event loop blocked {lag.max_lag_s:.3f} s"

    async def test_events_are_typed(self, adapter_case: AdapterCase) -> None:
        adapter = adapter_case.build()
        if Capability.EVENTS not in type(adapter).capabilities:
            with pytest.raises(AdapterUnsupported):
                async with adapter:
                    await anext(aiter(adapter.events()))
            return
        assert adapter_case.trigger is not None, "an EVENTS adapter's case needs a trigger"
        async with LoopLagMonitor() as lag, adapter:
            events = await first_event(adapter, adapter_case, count=1)
        assert lag.max_lag_s < adapter_case.max_loop_lag_s, f"event loop blocked {lag.max_lag_s:.3f} s"
        for event in events:
            assert isinstance(event, SourceEvent)
            assert isinstance(event.kind, EventKind)
            assert event.source_id, "events carry the source id"
            json.dumps(event.to_json())
        assert len({e.id for e in events}) == len(events)

    async def test_streams(self, adapter_case: AdapterCase) -> None:
        adapter = adapter_case.build()
        if Capability.STREAMS not in type(adapter).capabilities:
            with pytest.raises(AdapterUnsupported):
                await adapter.streams()
            return
        async with adapter:
            streams = await adapter.streams()
        assert isinstance(streams, StreamSet)
        assert streams.detection is not None
        assert streams.viewing is not None
        json.dumps(streams.to_json())

    async def test_cancellation_is_clean(self, adapter_case: AdapterCase) -> None:
        adapter = adapter_case.build()
        before = set(asyncio.all_tasks())
        async with adapter:
            if Capability.EVENTS in type(adapter).capabilities:
                task = asyncio.create_task(_drain(adapter.events()))
                await asyncio.sleep(0.5)
                t0 = time.monotonic()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 5.0)
                assert time.monotonic() - t0 < 2.0, "events() took too long to cancel"
        await adapter.close()  # closing twice is allowed
        # A peer served in this process (an emulated device) may take a moment to finish its side of
        # the closed connections; anything of the adapter's still running after that has leaked.
        deadline = time.monotonic() + 2.0
        while True:
            left = {t for t in asyncio.all_tasks() - before if not t.done() and not _is_peer(t)}
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert not left, f"tasks left running after close: {[(t.get_name(), t.get_coro()) for t in left]}"

    async def test_events_survive_a_peer_restart(self, adapter_case: AdapterCase) -> None:
        """events() never ends by itself: after the device reboots, events flow again."""
        adapter = adapter_case.build()
        if Capability.EVENTS not in type(adapter).capabilities:
            return  # nothing to survive: no events
        if adapter_case.restart_peer is None:
            assert adapter_case.no_restart_reason, "give the case a restart_peer (or a no_restart_reason)"
            return
        assert adapter_case.trigger is not None
        got: list[SourceEvent] = []
        async with adapter:
            task = asyncio.create_task(_collect(adapter.events(), got), name="conformance-restart")
            try:
                await _pull_until(task, got, 1, adapter_case)
                await asyncio.sleep(0.5)  # let events already on their way arrive before the restart
                before = len(got)
                await adapter_case.restart_peer()
                await _pull_until(task, got, before + 1, adapter_case, within_s=30.0)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert len({e.id for e in got}) == len(got)
        # nothing the device reported before the restart is reported again after it
        seen = {_fingerprint(e) for e in got[:before]}
        again = [e for e in got[before:] if _fingerprint(e) in seen]
        assert not again, f"reported again after the restart: {[e.to_json() for e in again]}"

    async def test_errors_map_to_hierarchy(self, adapter_case: AdapterCase) -> None:
        assert issubclass(AdapterError, HubError)
        if adapter_case.bad_auth is not None:
            with pytest.raises(AdapterAuthError):
                await adapter_case.build(**adapter_case.bad_auth).probe()
        if adapter_case.unreachable is not None:
            with pytest.raises((AdapterConnectError, AdapterNotReady)):
                await asyncio.wait_for(adapter_case.build(**adapter_case.unreachable).probe(), 30)
        with pytest.raises(AdapterUnsupported):
            await adapter_case.build().command("no-such-command")

    async def test_events_with_refused_credentials_raise_auth_error(self, adapter_case: AdapterCase) -> None:
        """Refused credentials come out of events() (the hub reports them once and waits minutes); an
        adapter must not retry them forever inside."""
        adapter = adapter_case.build(**(adapter_case.bad_auth or {}))
        if adapter_case.bad_auth is None or Capability.EVENTS not in type(adapter).capabilities:
            return  # no events, or the peer cannot refuse credentials
        with pytest.raises(AdapterAuthError):
            async with adapter:  # start() may already refuse
                await asyncio.wait_for(anext(aiter(adapter.events())), 30)

    async def test_secrets_never_shown(
        self, adapter_case: AdapterCase, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        adapter = adapter_case.build()
        shown: list[str] = [repr(adapter), str(adapter), repr(adapter.config), str(adapter.config),
                            json.dumps(adapter.config.redacted()), json.dumps(adapter.diagnostics())]
        shown.append(json.dumps((await adapter.probe()).to_json()))
        if Capability.STREAMS in type(adapter).capabilities:
            shown.append(json.dumps((await adapter.streams()).to_json()))
        for overrides in (adapter_case.bad_auth, adapter_case.unreachable):
            if overrides is None:
                continue
            try:
                await asyncio.wait_for(adapter_case.build(**overrides).probe(), 30)
            except HubError as exc:
                shown.append(str(exc))
                shown.append(repr(exc))
        shown.extend(r.getMessage() for r in caplog.records)
        shown.append(caplog.text)
        text = "\n".join(shown)
        for secret in adapter_case.secrets:
            assert secret not in text, "a secret leaked into repr, diagnostics, errors or logs"
        for key, wrong in (adapter_case.bad_auth or {}).items():
            if _SECRET_KEY.search(key) and isinstance(wrong, str) and len(wrong) >= 4:
                assert wrong not in text, f"the wrong {key} leaked"


def _fingerprint(event: SourceEvent) -> str:
    """What the device said (not the hub-made id): equal only for a replayed report."""
    return json.dumps([event.source_id, str(event.kind), event.at, event.data], sort_keys=True, default=str)


def _is_peer(task: asyncio.Task[Any]) -> bool:
    """Tasks of an in-process peer (an emulated device's aiohttp server), not of the adapter."""
    coro = task.get_coro()
    qualname = getattr(coro, "__qualname__", "")
    module = getattr(getattr(coro, "cr_code", None), "co_filename", "")
    return qualname.startswith(("RequestHandler.", "BaseProtocol.")) or "aiohttp/web_" in module


async def _collect(events: AsyncIterator[SourceEvent], into: list[SourceEvent]) -> None:
    async for event in events:
        into.append(event)


async def _pull_until(task: asyncio.Task[None], got: list[SourceEvent], count: int, case: AdapterCase,
                      within_s: float | None = None) -> None:
    assert case.trigger is not None
    deadline = time.monotonic() + (within_s or case.event_timeout_s)
    while len(got) < count:
        if task.done():
            error = None if task.cancelled() else task.exception()
            raise AssertionError(f"events() ended by itself: {error!r}")
        assert time.monotonic() < deadline, f"no event within {within_s or case.event_timeout_s} s"
        await case.trigger()
        for _ in range(20):
            if len(got) >= count or task.done():
                break
            await asyncio.sleep(0.05)


async def _drain(events: AsyncIterator[SourceEvent]) -> None:
    async for _ in events:
        pass
