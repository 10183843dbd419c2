"""One error hierarchy for the whole hub.

Library errors that also describe an OS-level failure inherit the builtin too
(``AdapterConnectError(AdapterError, OSError)``) so callers can catch either.
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError):
    """A configuration file is invalid. Carries where and how to fix it."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.hint = hint
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.field:
            text += f"{self.field}: "
        text += self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class AdapterError(HubError):
    """A source adapter failed."""


class AdapterConnectError(AdapterError, OSError):
    """The device or system could not be reached."""


class AdapterAuthError(AdapterError):
    """The device refused our credentials. Retrying will not help."""


class AdapterNotReady(AdapterError):
    """The device is reachable but not ready yet; retry later."""


class AdapterUnsupported(AdapterError, NotImplementedError):
    """The adapter has no such capability or command."""


class StreamError(HubError):
    """A video stream could not be opened or decoded."""


class StreamAuthError(StreamError):
    """The stream server refused our credentials (RTSP 401)."""


class StreamConnectError(StreamError, OSError):
    """The stream server could not be reached or dropped the connection."""


class DetectorError(HubError):
    """A detector backend could not be loaded or failed to run."""


class ModelNotFoundError(DetectorError, FileNotFoundError):
    """A configured model file does not exist (we never download models)."""


class StorageError(HubError):
    """The database failed in a way the caller must know about."""


class EmbeddedServiceError(HubError):
    """An embedded server (PostgreSQL, MQTT broker) failed to start or stop."""


class InvalidTransition(HubError):
    """An incident action is not allowed from the incident's current state (HTTP 409)."""

    def __init__(self, incident_id: str, state: str, action: str, allowed: tuple[str, ...] = (), *,
                 reason: str | None = None) -> None:
        self.incident_id = incident_id
        self.state = state
        self.action = action
        self.allowed = allowed
        self.reason = reason
        if reason is not None:
            super().__init__(f"incident {incident_id}: cannot {action!r}: {reason}")
            return
        hint = f"; allowed from {state!r}: {', '.join(allowed)}" if allowed else "; no action allowed"
        super().__init__(f"incident {incident_id}: cannot {action!r} while {state!r}{hint}")


class Forbidden(HubError, PermissionError):
    """The caller's role or grids do not allow this (HTTP 403)."""


class IncidentNotFound(HubError, LookupError):
    """No incident has this id (HTTP 404)."""

    def __init__(self, incident_id: str) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident {incident_id!r}")


class DeliveryError(HubError):
    """A notice could not be delivered on a channel.

    ``retryable`` False means a retry cannot help (HTTP 4xx, bad signature): dead-letter it now.
    ``retry_after_s`` is the peer's own hint (HTTP ``Retry-After``), when it gave one.
    """

    def __init__(self, message: str, *, retryable: bool = True, retry_after_s: float | None = None,
                 status: int | None = None) -> None:
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status
        super().__init__(message)
