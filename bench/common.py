"""Small pieces every benchmark shares: the result of a benchmark that cannot run here, and throwaway
databases beside the configured one."""

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse


def skipped_result(*, name: str, unit: str, baseline: str, measured: str, reason: str) -> dict[str, Any]:
    """The report row of a benchmark skipped for `reason` (printed too, so `make bench` says why)."""
    print(f"{name}: skipped: {reason}")
    return {
        "name": name,
        "description": f"skipped: {reason}",
        "unit": unit,
        "baseline": {"label": baseline, "value": None},
        "measured": {"label": measured, "value": None},
        "ratio": None,
        "skipped": reason,
    }


def database_url_named(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server."""
    return urlparse(url)._replace(path=f"/{name}").geturl()


DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def postgres_and_redis(*, redis_db: int | None = None) -> tuple[str, str] | str:
    """(PostgreSQL URL to create throwaway databases from, Redis URL), both answering, or why not.

    DATABASE_URL counts only when it is PostgreSQL; REDIS_URL's database is replaced by `redis_db`."""
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        database_url = DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if redis_db is not None:
        redis_url = urlparse(redis_url)._replace(path=f"/{redis_db}").geturl()
    try:
        import psycopg

        with psycopg.connect(database_url, connect_timeout=3):
            pass
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        host = urlparse(database_url).hostname
        return f"PostgreSQL at {host} unavailable ({type(exc).__name__}: {reason}); set DATABASE_URL"
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"Redis unavailable ({type(exc).__name__}: {exc}); set REDIS_URL"
    return database_url, redis_url


class DatabaseUnavailable(Exception):
    """No throwaway PostgreSQL database could be made: the benchmark is skipped with this reason."""


@contextlib.contextmanager
def throwaway_postgres_database(prefix: str) -> Iterator[str]:
    """Point Django's connection at a new, migrated PostgreSQL database beside the configured one for
    the block, and drop it afterwards: benchmarks seed millions of rows into it, never into real data.
    Yields the server's version. Raises DatabaseUnavailable when the configured database is not
    PostgreSQL or cannot be reached."""
    from django.db import OperationalError, connection

    if connection.vendor != "postgresql":
        raise DatabaseUnavailable(
            "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"
        )
    original_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{prefix}_{os.getpid()}"
    try:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    except OperationalError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise DatabaseUnavailable(
            f"PostgreSQL unavailable ({type(exc).__name__}: {reason}); set DATABASE_URL"
        ) from exc
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version')")
            server_version = cursor.fetchone()[0]
        yield server_version
    finally:
        connection.close()
        connection.creation.destroy_test_db(original_name, verbosity=0)
