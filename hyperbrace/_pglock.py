"""A PostgreSQL advisory lock: the budget lock for studies that several machines share."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@functools.lru_cache(maxsize=8)
def _engine(url: str) -> Any:
    import sqlalchemy

    return sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=1)


@contextmanager
def advisory_lock(url: str, key: str) -> Iterator[None]:
    """Hold ``pg_advisory_lock`` on ``key`` (hashed by PostgreSQL) for the duration of the block."""
    import sqlalchemy

    with _engine(url).connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": key})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": key})
            connection.commit()
