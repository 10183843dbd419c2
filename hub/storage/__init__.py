"""Hub storage: PostgreSQL (TimescaleDB when available) through a psycopg 3 async pool."""

from hub.storage.database import Database
from hub.storage.transitions import ACTIONS, OPEN_STATES, STATES

__all__ = ["ACTIONS", "OPEN_STATES", "STATES", "Database"]
