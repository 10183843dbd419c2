"""Shared pieces for the closed-loop tests: a grid tree with people, a movable clock, a service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from alerts.people import Caller, Directory
from alerts.service import IncidentService
from alerts.settings import DispatchSection, GridConfig, PersonConfig
from hub.bus import Bus
from hub.storage import Database

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


GRIDS = [
    GridConfig(code="D", name="区 District", level="district"),
    GridConfig(code="S", name="街道 Street", level="street", parent="D"),
    GridConfig(code="G1", name="一网格", level="grid", parent="S"),
    GridConfig(code="G2", name="二网格", level="grid", parent="S"),
]


def person(id: str, roles: list[str], grids: list[str], *, department: str = "",
           channels: list[dict[str, Any]] | None = None, token: str | None = None) -> PersonConfig:
    return PersonConfig.model_validate({"id": id, "name": id, "roles": roles, "grids": grids,
                                        "department": department, "channels": channels or [],
                                        "token": token})


def people(channels: list[dict[str, Any]] | None = None) -> list[PersonConfig]:
    ch = channels if channels is not None else [{"type": "ws"}]
    return [
        person("w1", ["grid_worker"], ["G1"], channels=ch, token="w1-token-0123456789"),
        person("p1", ["patrol"], ["G1"], channels=ch, token="p1-token-0123456789"),
        person("w2", ["grid_worker"], ["G2"], channels=ch, token="w2-token-0123456789"),
        person("lead", ["grid_leader"], ["S"], channels=ch, token="lead-token-0123456789"),
        person("duty", ["duty_leader"], [], channels=ch, token="duty-token-0123456789"),
        person("cop", ["department"], [], department="公安", channels=ch, token="cop-token-0123456789"),
        person("op", ["operator"], ["D"], channels=ch, token="op-token-0123456789"),
    ]


def caller(directory: Directory, id: str) -> Caller:
    return Caller.of(directory.by_id[id])


@asynccontextmanager
async def loop_service(pg_url: str, *, clock: Clock | None = None, cfg: DispatchSection | None = None,
                       staff: list[PersonConfig] | None = None,
                       mqtt: bool = False) -> AsyncIterator[tuple[IncidentService, Database, Bus]]:
    bus = Bus()
    directory = Directory(staff if staff is not None else people(), GRIDS)
    async with Database(pg_url, timescaledb="off") as db:
        service = IncidentService(db, directory, cfg or DispatchSection(), bus, clock=clock or Clock(),
                                  mqtt=mqtt)
        yield service, db, bus
