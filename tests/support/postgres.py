"""A private PostgreSQL database for one test session: created with a random name, dropped after.

The server is the machine's (``EXTAPI_KIT_PG_SERVER``, default ``postgresql://postgres@127.0.0.1:5432``);
only the database made here is ever touched. ``DATABASE_URL`` names a database to use instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"


def server_url() -> str:
    """Return the URL of the PostgreSQL server (no database part)."""
    return os.environ.get("EXTAPI_KIT_PG_SERVER", DEFAULT_SERVER).rstrip("/")


async def _admin(sql: str) -> None:
    import asyncpg

    last: Exception | None = None
    for maintenance in ("postgres", "template1"):
        try:
            conn = await asyncpg.connect(f"{server_url()}/{maintenance}", timeout=3)
        except Exception as exc:
            last = exc
            continue
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
        return
    assert last is not None
    raise last


def _run_admin(statement: str) -> None:
    """Run an admin statement on its own event loop in its own thread: session fixtures may be
    first requested from inside a running loop (an async fixture), where asyncio.run refuses."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _admin(statement)).result()


def create_database() -> str:
    """Create a database with a random name and return its URL."""
    name = f"extapi_test_{secrets.token_hex(6)}"
    _run_admin(f"CREATE DATABASE {name}")
    return f"{server_url()}/{name}"


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database` (its connections are closed first).

    Args:
        url: the URL returned by :func:`create_database`.
    """
    name = url.rsplit("/", 1)[1]
    assert name.startswith("extapi_test_")
    _run_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def sql(url: str, statement: str, *args: Any) -> Any:
    """Run one statement on the database of ``url`` (without our query options); return rows.

    Args:
        url: a test database URL (``?schema=`` is ignored).
        statement: the SQL.
        *args: its parameters.
    """
    import asyncpg

    conn = await asyncpg.connect(url.split("?", 1)[0], timeout=3)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()
