"""Store fixtures: the same tests run on a SQLite file in tmp_path and, when configured, on PostgreSQL.

``BATCHRUNNER_TEST_PG_URL`` (set by .ci/run) names a PostgreSQL server; each test gets a database of its
own, created and dropped around it. When the variable is set the PostgreSQL tests must run: an unreachable
server fails them, never skips them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from batchrunner.store.store import Store

PG_URL_VAR = "BATCHRUNNER_TEST_PG_URL"
POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)
"""The PostgreSQL parameter of a backend-parametrised fixture: its tests carry the ``postgres`` marker."""


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; its SQLAlchemy URL.

    Only a test marked ``postgres`` may ask for one, so that ``-m postgres`` selects exactly the tests
    that need the server (a fixture's ``postgres`` parameter carries the mark: see :data:`POSTGRES`).
    """
    if request.node.get_closest_marker("postgres") is None:
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL without the postgres marker", pytrace=False)
    base = os.environ.get(PG_URL_VAR)
    if not base:
        pytest.skip(f"{PG_URL_VAR} is not set (.ci/run sets it)")
    name = f"br_test_{secrets.token_hex(6)}"
    admin_dsn = _asyncpg_dsn(base)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(base)
            .set(database=name, drivername="postgresql+asyncpg")
            .render_as_string(hide_password=False)
        )
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", POSTGRES])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database target (path or URL) for each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    database: str = request.getfixturevalue("pg_database")
    return database


@pytest.fixture
async def store(db_target: str) -> AsyncIterator[Store]:
    opened = await Store.open(db_target)
    try:
        yield opened
    finally:
        await opened.close()
