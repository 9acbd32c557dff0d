"""Shared fixtures. PostgreSQL tests use the running server on 127.0.0.1:5432; with
TONGBAN_REQUIRE_POSTGRES=1 (set by .ci/run) its absence fails the run instead of skipping."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql

from adapters.settings import PostgresSettings

# No example may fail for taking long: these machines are shared and noisy, and speed is measured by
# `make bench`, never asserted by a test (hypothesis's default is a 200 ms deadline per example).
settings.register_profile("tongban", deadline=None)
settings.load_profile("tongban")

PG_HOST = os.environ.get("TONGBAN_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TONGBAN_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TONGBAN_TEST_PG_USER", "postgres")
PG_DB = os.environ.get("TONGBAN_TEST_PG_DB", "postgres")


def _postgres_reachable() -> str | None:
    try:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_DB, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable: {exc}".strip()


@pytest.fixture(scope="session")
def postgres_available() -> None:
    problem = _postgres_reachable()
    if problem is None:
        return
    if os.environ.get("TONGBAN_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{problem} (TONGBAN_REQUIRE_POSTGRES=1: PostgreSQL tests must run)")
    pytest.skip(problem)


@pytest.fixture
def postgres_schema(postgres_available: None) -> Iterator[PostgresSettings]:
    """A fresh schema per test, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    settings = PostgresSettings(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=PG_USER, schema=schema)
    yield settings
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_DB, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
