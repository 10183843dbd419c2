"""The hub's web app: API contract v1, ``/ws/events``, snapshots, MJPEG, ``/metrics``, dashboard."""

from hub.web.app import create_app
from hub.web.view import HubView

__all__ = ["HubView", "create_app"]
