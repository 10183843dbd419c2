"""What the web app needs from the runtime, and nothing more.

The web app never imports the runtime; :func:`hub.web.create_app` takes any object
that satisfies :class:`HubView` (``hub.view.RuntimeView`` in production, a small
in-memory view in tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from alerts.people import Caller
    from alerts.reports import Report
    from detectors.detections import Detections
    from hub.bus import Bus
    from hub.config import HubConfig
    from hub.metrics import Metrics
    from streams.frame import Frame

#: Actions accepted by ``POST /api/incidents/{id}/actions`` (API contract v1).
INCIDENT_ACTIONS = ("accept", "arrive", "resolve", "close", "reopen", "false_alarm")
INCIDENT_STATES = ("received", "classified", "dispatched", "accepted", "resolved", "closed",
                   "supervised", "false_alarm")
INCIDENT_CLASSES = ("general", "professional", "emergency")
#: States in which an incident is no longer open (KPI "open incidents" excludes them).
CLOSED_STATES = frozenset({"closed", "false_alarm"})


class HubView(Protocol):
    """Read/act surface of a running hub.

    Every dict returned is the JSON shape of API contract v1. Camera dicts must carry no
    credentials (the web app redacts URLs again on the way out, as a second line).
    """

    cfg: HubConfig
    bus: Bus
    metrics: Metrics
    evidence_dir: Path

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded", "components": {...}}``."""
        ...

    def cameras(self) -> list[dict[str, Any]]:
        """``id``, ``name``, ``grid``, ``status`` (online/offline) plus stats (fps, dropped ...)."""
        ...

    def devices(self) -> list[dict[str, Any]]:
        """``id``, ``name``, ``grid``, ``kind``, ``status`` and the last event."""
        ...

    def sources(self) -> list[dict[str, Any]]:
        """Every adapter (cameras and sources): ``id``, ``kind``, ``state``, device info, streams
        (credentials redacted) and the adapter's own diagnostics."""
        ...

    def latest_frame(self, camera_id: str) -> tuple[Frame, Detections | None] | None:
        """Newest frame of a camera and the detections for it (boxes in ``frame.image`` pixels)."""
        ...

    async def list_incidents(
        self, state: str | None, grid: str | None, cls: str | None, since: datetime | None, limit: int,
        *, caller: Caller | None = None,
    ) -> list[dict[str, Any]]:
        """Incidents newest first; ``since`` is timezone-aware (UTC); ``grid`` includes the grids below
        it; with ``caller``, only what the caller may see (before ``limit``)."""
        ...

    async def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        """One incident with ``history``, or ``None``."""
        ...

    def caller(self, token: str | None) -> Caller | None:
        """Who is calling: the person owning ``token``; without one, the control room (or None when
        ``http.anonymous`` is ``none``); an unknown token is None."""
        ...

    def holds_token(self, person_id: str) -> bool:
        """True if ``person_id`` is a configured person with an API token (who must then use it)."""
        ...

    def can_see(self, caller: Caller, incident: dict[str, Any]) -> bool:
        """True if the incident is in the caller's grids (or department)."""
        ...

    async def incident_action(self, incident_id: str, action: str, caller: Caller, *, note: str = "",
                              satisfaction: str | None = None,
                              attachments: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """Apply an action and return the updated incident.

        Raises :class:`hub.errors.InvalidTransition` when the action is illegal in the current
        state, :class:`hub.errors.Forbidden` when the caller's role or grids do not allow it, and
        ``LookupError`` (e.g. ``KeyError``) when the incident does not exist.
        """
        ...

    async def dispatch_jobs(self, state: str | None, incident_id: str | None,
                            limit: int) -> list[dict[str, Any]]:
        """Delivery jobs (newest first), e.g. the dead-letter list (``state="dead"``)."""
        ...

    async def dispatch_stats(self) -> dict[str, int]:
        """Jobs per state: pending, done, dead."""
        ...

    async def kpis(self, since: datetime | None, until: datetime | None,
                   grid: str | None) -> list[dict[str, Any]]:
        """KPIs per grid and local day (``alerts.kpis.daily_kpis``); default the last 7 days."""
        ...

    async def alert_quality(self, since: datetime | None, until: datetime | None,
                            caller: Caller) -> list[dict[str, Any]]:
        """False alarms per alert kind and source in the caller's grids (``alerts.alert_quality``);
        default the last 30 days."""
        ...

    async def retry_dead(self, job_id: int) -> bool:
        """Move a dead job back to the queue; False if there is no such dead job."""
        ...

    async def report_incident(self, caller: Caller, report: Report) -> tuple[dict[str, Any], bool]:
        """Open an incident a person reports by hand (``alerts.reports.open_report``); returns it with
        history and True, or the incident an earlier attempt with the same idempotency key opened and
        False. Raises :class:`hub.errors.Forbidden` (role or grid) and ``alerts.reports.UnknownGrid``."""
        ...

    async def silences(self, caller: Caller) -> list[dict[str, Any]]:
        """Silences not over yet (config ones ``config:<n>`` and stored ones) in the caller's grids."""
        ...

    async def add_silence(self, caller: Caller, *, grid: str | None, source: str | None, kinds: Sequence[str],
                          starts: datetime | None, ends: datetime, reason: str) -> dict[str, Any]:
        """Store a silence; the alert engine sees it at once. Raises :class:`hub.errors.Forbidden` and
        ``alerts.reports.UnknownGrid``."""
        ...

    async def delete_silence(self, caller: Caller, silence_id: int) -> bool:
        """Lift a stored silence; False if there is none. Raises :class:`hub.errors.Forbidden`."""
        ...
