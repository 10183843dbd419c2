"""A simulated ACME access controller for tests and demos (the far edge: a fake device, real HTTP).

Run standalone: ``python -m acme_gate.simulator --port 8099 --token demo-token``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiohttp import web


class AcmeGateSimulator:
    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.host = host
        self.port = port
        self.booting = False
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def emit(self, type_: str, door: str = "1", **extra: Any) -> dict[str, Any]:
        event = {"seq": len(self.events) + 1, "type": type_, "door": door, "time": time.time(), **extra}
        self.events.append(event)
        async with self._changed:
            self._changed.notify_all()
        return event

    def _check(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise web.HTTPUnauthorized(text='{"error": "bad token"}', content_type="application/json")
        if self.booting:
            raise web.HTTPServiceUnavailable()

    async def _info(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response({"model": "AG-200", "serial": "AG200-0042", "firmware": "2.1.7",
                                  "doors": {"1": "north gate", "2": "east gate"}})

    async def _events(self, request: web.Request) -> web.Response:
        self._check(request)
        after = int(request.query.get("after", "0"))
        wait = min(float(request.query.get("wait", "20")), 60.0)

        def pending() -> list[dict[str, Any]]:
            return [e for e in self.events if e["seq"] > after]

        try:
            async with asyncio.timeout(wait), self._changed:
                await self._changed.wait_for(lambda: bool(pending()))
        except TimeoutError:
            pass
        return web.json_response({"events": pending()})

    async def start(self) -> AcmeGateSimulator:
        app = web.Application()
        app.router.add_get("/api/v1/info", self._info)
        app.router.add_get("/api/v1/events", self._events)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def reboot(self, down_s: float = 1.0) -> None:
        """Drop every connection, stay away ``down_s``, come back on the same port (events kept)."""
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--token", default="demo-token")
    p.add_argument("--every", type=float, default=10.0, help="seconds between simulated door events")
    args = p.parse_args()
    sim = await AcmeGateSimulator(args.token, port=args.port).start()
    print(f"ACME gate simulator on {sim.url}", flush=True)
    while True:
        await asyncio.sleep(args.every)
        await sim.emit("unlock", method="card")
        await sim.emit("door_open")
        await asyncio.sleep(3)
        await sim.emit("door_close")


if __name__ == "__main__":
    asyncio.run(_main())
