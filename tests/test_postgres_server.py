"""The real PostgreSQL the backend's tests run against starts, answers SQL, and serves psycopg's async pool."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


async def test_a_real_postgresql_answers_through_psycopgs_async_pool(postgres: PostgresServer) -> None:  # noqa: F811
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        conn.execute("CREATE TABLE IF NOT EXISTS probe (id serial PRIMARY KEY, word text NOT NULL)")
    assert version is not None and int(str(version[0]).split(".")[0]) >= 13
    async with AsyncConnectionPool(postgres.dsn, min_size=1, max_size=2, open=False) as pool:
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO probe (word) VALUES (%s)", ("hello",))
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT word FROM probe")
            assert await cursor.fetchall() == [("hello",)]
