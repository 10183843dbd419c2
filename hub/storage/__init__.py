"""Hub storage: PostgreSQL (TimescaleDB when available) through a psycopg 3 async pool."""

from hub.storage.database import Database

__all__ = ["Database"]
