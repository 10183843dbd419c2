"""The example adapter through the hub's conformance suite, against its simulated controller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from acme_gate.simulator import AcmeGateSimulator

from adapters.base import Adapter, AdapterContext
from adapters.conformance import AdapterCase, AdapterConformance, first_event
from adapters.registry import create, entries
from hub.errors import AdapterNotReady
from hub.events import EventKind

TOKEN = "acme-secret-token-42"


@pytest.fixture
async def controller() -> AsyncIterator[AcmeGateSimulator]:
    sim = await AcmeGateSimulator(TOKEN).start()
    yield sim
    await sim.stop()


def config(sim: AcmeGateSimulator) -> dict[str, object]:
    return {"kind": "acme-gate", "id": "gate-north", "grid": "440111001001", "url": sim.url,
            "token": TOKEN, "wait_s": 2, "cameras": {"1": ["cam-north"]}}


class TestAcmeGateConformance(AdapterConformance):
    @pytest.fixture
    async def adapter_case(self, controller: AcmeGateSimulator) -> AdapterCase:
        async def trigger() -> None:
            await controller.emit("door_forced")

        return AdapterCase(
            config=config(controller),
            secrets=[TOKEN],
            trigger=trigger,
            restart_peer=controller.reboot,
            bad_auth={"token": "wrong-token-0000"},
            unreachable={"url": "http://127.0.0.1:9", "timeout_s": 1},
        )


def test_found_through_its_entry_point() -> None:
    entry = next(e for e in entries() if e.kind == "acme-gate")
    assert entry.origin.startswith("entry point acme-gate (sanwang-hub-acme-gate)")


async def test_events_map_to_typed_hub_events(controller: AcmeGateSimulator) -> None:
    adapter = create(config(controller))
    case = AdapterCase(config=config(controller))
    async with adapter:
        await controller.emit("unlock", method="fingerprint")
        await controller.emit("heartbeat")  # an event type the hub has no use for: skipped
        await controller.emit("door_open")
        events = await first_event(adapter, case, count=2)
    assert [e.kind for e in events] == [EventKind.LOCK_UNLOCKED, EventKind.DOOR_OPENED]
    assert events[0].data["method"] == "fingerprint"
    assert events[1].data["cameras"] == ["cam-north"]
    assert events[1].source_id == "gate-north.door1"


async def test_booting_controller_is_not_ready_then_events_resume(controller: AcmeGateSimulator) -> None:
    adapter = create(config(controller))
    controller.booting = True
    with pytest.raises(AdapterNotReady):
        await adapter.probe()
    controller.booting = False
    async with adapter:
        got = asyncio.create_task(first_event(adapter, AdapterCase(config=config(controller))))
        await asyncio.sleep(0.2)
        await controller.emit("tamper", door="2")
        (event,) = await got
    assert event.kind is EventKind.TAMPER
    assert event.source_id == "gate-north.door2"


async def test_nothing_is_reported_twice_across_a_hub_restart(controller: AcmeGateSimulator,
                                                              tmp_path: Path) -> None:
    def adapter() -> Adapter[Any]:
        return create(config(controller), AdapterContext(state_dir=tmp_path / "gate-north"))

    case = AdapterCase(config=config(controller))
    async with adapter() as first:
        await controller.emit("door_open")
        (seen,) = await first_event(first, case)
    await controller.emit("door_close")  # while the hub is down
    async with adapter() as second:  # a new process would start exactly like this
        (after,) = await first_event(second, case)
    assert seen.kind is EventKind.DOOR_OPENED
    assert after.kind is EventKind.DOOR_CLOSED  # not door_open again
    assert (tmp_path / "gate-north" / "cursor").read_text() == "2"


async def test_a_first_start_begins_at_the_newest_event_not_the_history(controller: AcmeGateSimulator,
                                                                         tmp_path: Path) -> None:
    await controller.emit("door_forced")  # happened long before the hub was installed
    adapter = create(config(controller), AdapterContext(state_dir=tmp_path / "g"))
    async with adapter:
        got = asyncio.create_task(first_event(adapter, AdapterCase(config=config(controller))))
        await asyncio.sleep(0.3)
        await controller.emit("door_open")
        (event,) = await got
    assert event.kind is EventKind.DOOR_OPENED
