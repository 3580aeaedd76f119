"""Deployment fixtures: a throw-away PostgreSQL database for Dagster's own instance storage."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from cms_stripe_tests.conftest import PG_ADMIN_URL


def dagster_storage_url(name: str) -> str:
    # dagster-postgres needs psycopg2 (its LISTEN/NOTIFY breaks on psycopg 3): see known traps.
    url = sa.engine.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg2", database=name)
    return url.render_as_string(hide_password=False)


@pytest.fixture()
def fresh_pg_database() -> Iterator[Callable[[str], str]]:
    """Makes fresh PostgreSQL databases on demand (label → database name); drops them all afterwards."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make(label: str) -> str:
        name = f"cms_stripe_{label}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name

    try:
        yield make
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture()
def dagster_pg_url(fresh_pg_database) -> str:
    """A fresh, empty PostgreSQL database for Dagster's run, event-log and schedule storage."""
    return dagster_storage_url(fresh_pg_database("dagster"))
