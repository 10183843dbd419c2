"""PostgreSQL fixtures: a fresh schema per test in the local server's ``test`` database.

The server is the real local PostgreSQL (``HUB_TEST_DATABASE_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets its own schema
(``t_<pid>_<random>``) selected through the connection's ``search_path`` and dropped
afterwards, so parallel runs never collide.

Use in a test module: ``pg_url = pg.pg_url`` (a fixture object re-exported by name).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

BASE_URL = os.environ.get("HUB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def schema_url(schema: str) -> str:
    sep = "&" if "?" in BASE_URL else "?"
    return f"{BASE_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """URL of a new, empty schema; dropped with everything in it on leaving (any fixture scope)."""
    schema = f"t_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema_url(schema)
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty schema; dropped with everything in it after the test."""
    with fresh_schema() as url:
        yield url


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A hub state dir that another OS user (PostgreSQL's, when we are root) can enter.

    pytest's ``tmp_path`` lives under a 0700 directory, which the ``postgres`` user cannot
    traverse; this one is a 0755 directory directly under the system temp dir.
    """
    path = Path(tempfile.mkdtemp(prefix="hub-state-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
