"""Shared fixtures: every storage test runs on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, text, update
from sqlalchemy.engine import make_url

from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container, bootstrap
from omnicrm.services.access import auth
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings
from omnicrm.store import audit_key
from omnicrm.store.audit_digest import GENESIS, head_mac
from omnicrm.store.tables import audit_head, metadata

PG_URL = os.environ.get("OMNICRM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _settings(url: str) -> Settings:
    return Settings(
        database_url=url,
        catalogue_file=SHIPPED_CATALOGUE,
        scenarios_dir=SHIPPED_SCENARIOS,
        env="test",
    )


@contextmanager
def _fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database named `prefix_<random>`, dropped afterwards (WITH FORCE: a
    worker a test killed may still hold a connection). The admin engine pings its connection first,
    so a test that restarts PostgreSQL does not leave the drop on a dead one."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT", pool_pre_ping=True
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with _fresh_pg_database("omnicrm_test") as url:
        yield url


@pytest.fixture
def own_pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test alone (one that restarts or floods the server)."""
    with _fresh_pg_database("omnicrm_own") as url:
        yield url


@pytest.fixture(scope="session")
def _containers(tmp_path_factory: pytest.TempPathFactory, pg_database: str) -> Iterator[dict[str, Container]]:
    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    built = {
        "sqlite": bootstrap(_settings(sqlite_url), migrate=True),
        "postgresql": bootstrap(_settings(pg_database), migrate=True),
    }
    yield built
    for container in built.values():
        container.close()


def _wipe(container: Container) -> None:
    with container.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name == "customers":
                conn.execute(update(table).values(merged_into=None))
            if table.name != "audit_head":
                conn.execute(delete(table))
        conn.execute(
            update(audit_head).values(
                last_hash=GENESIS,
                last_id=0,
                entry_count=0,
                at=None,
                legacy_last_id=0,
                tampered_since=None,
                mac=head_mac(
                    audit_key.key_for(container.engine),
                    last_id=0,
                    entry_count=0,
                    last_hash=GENESIS,
                    at=None,
                    legacy_last_id=0,
                    tampered_since=None,
                ),
                checked_id=0,
                checked_count=0,
                checked_hash=GENESIS,
                checked_at=None,
                checked_mac=None,
            )
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def container(request: pytest.FixtureRequest, _containers: dict[str, Container]) -> Iterator[Container]:
    """A migrated, empty database on each backend (emptied again after the test)."""
    built = _containers[request.param]
    _wipe(built)
    yield built
    _wipe(built)


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container)) as test_client:
        yield test_client


@pytest.fixture
def token_for(container: Container) -> Callable[[str], str]:
    """token_for(role) -> a Bearer token of a fresh user holding that role."""

    def make(role: str) -> str:
        username = f"{role}-{uuid.uuid4().hex[:6]}"
        with container.uow() as uow:
            at = datetime.now(UTC)
            auth.create_user(
                uow.conn, username=username, role=role, password=None, branch=None, actor="test", now=at
            )
            token = auth.issue_token(uow.conn, username=username, name="test", ttl=None, actor="test", now=at)
            uow.commit()
        return token

    return make


@pytest.fixture
def headers_for(token_for: Callable[[str], str]) -> Callable[[str], dict[str, str]]:
    return lambda role: {"Authorization": f"Bearer {token_for(role)}"}
