"""Fixtures for the web store on REAL databases: SQLite files and a PostgreSQL server.

``postgres_url``  (session) an SQLAlchemy URL of a fresh database ``edge_har_test_<random>`` on the
                  PostgreSQL at ``EDGE_HAR_TEST_POSTGRES`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``,
                  trust auth, as scripts/bootstrap.sh sets it up), dropped at the end of the session.
                  No server answering is a test failure naming the URL, not a skip: CI must run both backends.
``db_url``        (parametrized: ``sqlite``, ``postgresql``) a URL whose database holds no edge-har tables:
                  a new SQLite file under tmp_path, or the session's PostgreSQL database emptied. Every test
                  that takes it runs once per backend.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    sa = pytest.importorskip("sqlalchemy")
    base = sa.engine.make_url(os.environ.get("EDGE_HAR_TEST_POSTGRES", DEFAULT_POSTGRES))
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"edge_har_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"no PostgreSQL at {base.render_as_string(hide_password=True)} ({str(exc.orig).strip().splitlines()[0]}); "
            "scripts/bootstrap.sh installs and starts one, or set EDGE_HAR_TEST_POSTGRES"
        )
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'web.sqlite3'}"
    import sqlalchemy as sa

    from edge_har.web.store import metadata

    url: str = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    metadata.drop_all(engine)  # each test starts from an empty database, as a SQLite test does
    engine.dispose()
    return url
