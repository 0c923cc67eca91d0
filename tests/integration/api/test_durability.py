"""Acknowledged means durable: an event answered 201 is on disk on both backends, not only in the
operating system's cache. SQLite syncs its write-ahead log at every commit (`synchronous=FULL`) unless
the bank chooses NORMAL (OMNICRM_SQLITE_SYNCHRONOUS); PostgreSQL never runs with
`synchronous_commit=off`, even when the server or the URL asks for it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from shell import omnicrm_cmd
from sqlalchemy import Engine

from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container, bootstrap
from omnicrm.services.access import auth
from omnicrm.settings import Settings

Json = dict[str, Any]
SYNCHRONOUS = {"NORMAL": 1, "FULL": 2}


def _synchronous(engine: Engine) -> str:
    """What the app's own connections run with: SQLite's pragma or PostgreSQL's setting."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            level = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
            return {v: k for k, v in SYNCHRONOUS.items()}[level]
        return str(conn.exec_driver_sql("SHOW synchronous_commit").scalar_one())


def _accepted(container: Container, event: Json) -> None:
    """POST the event as an admin of this container and check it was acknowledged."""
    with container.uow() as uow:
        at, name = datetime.now(UTC), f"admin-{uuid.uuid4().hex[:6]}"
        auth.create_user(
            uow.conn, username=name, role="admin", password=None, branch=None, actor="test", now=at
        )
        token = auth.issue_token(uow.conn, username=name, name="test", ttl=None, actor="test", now=at)
        uow.commit()
    with TestClient(create_app(container)) as client:
        response = client.post("/v1/events", json=event, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text


@pytest.fixture
def opened() -> Iterator[Callable[..., Container]]:
    built: list[Container] = []

    def make(settings: Settings, *, migrate: bool) -> Container:
        built.append(bootstrap(settings, migrate=migrate))
        return built[-1]

    yield make
    for container in built:
        container.close()


def test_an_acknowledged_event_is_flushed_to_disk_by_default(
    container: Container, make_event: Callable[..., Json]
) -> None:
    _accepted(container, make_event())

    level = _synchronous(container.engine)

    if container.engine.dialect.name == "sqlite":
        assert level == "FULL"
    else:
        assert level != "off"


@pytest.mark.parametrize(
    ("chosen", "expected"), [("NORMAL", "NORMAL"), ("full", "FULL"), ("Normal", "NORMAL")]
)
def test_the_bank_chooses_sqlite_s_synchronous_level(
    tmp_path: Path,
    opened: Callable[..., Container],
    make_event: Callable[..., Json],
    chosen: str,
    expected: str,
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'bank.db'}", env="test", sqlite_synchronous=chosen
    )
    container = opened(settings, migrate=True)

    _accepted(container, make_event())
    assert _synchronous(container.engine) == expected


def test_postgresql_never_acknowledges_before_its_log_is_flushed(
    container: Container, opened: Callable[..., Container], make_event: Callable[..., Json]
) -> None:
    if container.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL setting")
    asks_off = container.engine.url.update_query_dict({"options": "-c synchronous_commit=off"})
    url = asks_off.render_as_string(hide_password=False)
    on_it = opened(Settings(database_url=url, env="test"), migrate=False)  # the fixture migrated it

    _accepted(on_it, make_event())
    assert _synchronous(on_it.engine) == "on"


@pytest.mark.parametrize("value", ["sometimes", "OFF", "EXTRA", ""])
def test_an_invalid_level_is_refused_at_start_with_one_clear_line(tmp_path: Path, value: str) -> None:
    database = tmp_path / "never.db"

    result = omnicrm_cmd(
        "migrate",
        cwd=tmp_path,
        OMNICRM_SQLITE_SYNCHRONOUS=value,
        OMNICRM_DATABASE_URL=f"sqlite:///{database}",
    )

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "OMNICRM_SQLITE_SYNCHRONOUS" in lines[0]
    assert "'FULL'" in lines[0]
    assert "'NORMAL'" in lines[0]
    assert not database.exists()
