"""Issue 18, point 7: a full disk is a 503 problem with Retry-After and one log line, not a 500 with
a traceback per request; nothing of a refused request is stored.

SQLite: `PRAGMA max_page_count` set on every new connection to the pages the (vacuumed) file has, so
any write that needs a new page gets SQLITE_FULL - the real "database or disk is full".
PostgreSQL: a disk cannot be filled on the shared test server, so a trigger on the written tables
raises SQLSTATE 53100 (disk_full) from the real INSERT: psycopg raises its real `DiskFull`, through
the same statements as a full disk would.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from omnicrm.bootstrap import Container

Headers = dict[str, str]
Json = dict[str, Any]
PROBLEM = "application/problem+json"
_TRIGGERED = ("customers", "events")


def _sqlite_full(container: Container) -> Iterator[None]:
    raw = container.engine.raw_connection()  # outside SQLAlchemy's BEGIN: VACUUM runs alone
    try:
        sqlite = raw.driver_connection
        assert sqlite is not None
        sqlite.execute("VACUUM")  # no free pages left to reuse
        pages = int(sqlite.execute("PRAGMA page_count").fetchone()[0])
    finally:
        raw.close()

    def limit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(container.engine, "connect", limit)
    container.engine.dispose()
    try:
        yield
    finally:
        event.remove(container.engine, "connect", limit)
        container.engine.dispose()


def _postgres_full(container: Container) -> Iterator[None]:
    with container.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' "
                "USING ERRCODE = 'disk_full'; END $$"
            )
        )
        for table in _TRIGGERED:
            conn.execute(
                text(
                    f"CREATE TRIGGER test_disk_full BEFORE INSERT ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION test_disk_full()"
                )
            )
    try:
        yield
    finally:
        with container.engine.begin() as conn:
            for table in _TRIGGERED:
                conn.execute(text(f"DROP TRIGGER IF EXISTS test_disk_full ON {table}"))
            conn.execute(text("DROP FUNCTION IF EXISTS test_disk_full()"))


@pytest.fixture
def full_disk(container: Container, client: TestClient, admin: Headers) -> Iterator[None]:
    """The database refuses every write that needs more room (after the admin is created)."""
    if container.engine.dialect.name == "sqlite":
        yield from _sqlite_full(container)
    else:
        yield from _postgres_full(container)


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["status"] == 503
    assert body["type"] == "urn:omnicrm:problem:storage_full"
    assert "traceback" not in response.text.lower()


def _omnicrm_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the request path logged (the decision worker beside it logs its own failed batches)."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith(_REQUEST_PATH)]


_REQUEST_PATH = (
    "omnicrm.api",
    "omnicrm.services.intake.group_commit",
    "omnicrm.services.intake.ingest",
    "fastapi",
    "starlette",
)


def _letters(length: int = 120) -> str:
    """A long random identifier value of letters only (digits could read as a card number)."""
    return uuid.uuid4().hex.translate(_NO_DIGITS).ljust(length, "x")


_NO_DIGITS = str.maketrans("0123456789", "ghijklmnop")


def _big_customer() -> Json:
    """A profile whose identifiers alone fill more than a page."""
    return {
        "identifiers": [{"kind": "cbs_id", "value": _letters()} for _ in range(40)],
        "first_name": "Olena",
    }


def test_a_profile_write_on_a_full_disk_is_a_503_with_one_log_line(
    client: TestClient,
    admin: Headers,
    full_disk: None,
    state_counts: Callable[[], dict[str, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = state_counts()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        response = client.post("/v1/customers", json=_big_customer(), headers=admin)
    _assert_unavailable(response)
    assert state_counts() == before
    records = _omnicrm_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is None
    assert "Olena" not in records[0].getMessage()


def test_a_batch_on_a_full_disk_is_a_503_and_nothing_is_written(
    client: TestClient,
    admin: Headers,
    full_disk: None,
    make_event: Callable[..., Json],
    state_counts: Callable[[], dict[str, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = state_counts()
    items = [make_event(identifiers={"cookie_id": _letters()}) for _ in range(300)]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        response = client.post("/v1/events:batch", json={"items": items}, headers=admin)
    _assert_unavailable(response)
    assert state_counts() == before
    records = _omnicrm_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is None


def test_single_events_on_a_full_disk_each_get_a_503_and_none_is_half_written(
    client: TestClient,
    admin: Headers,
    full_disk: None,
    container: Container,
    make_event: Callable[..., Json],
    state_counts: Callable[[], dict[str, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Concurrent single events share group commits. On PostgreSQL every insert fails, so every
    request gets the 503. On SQLite the first events may still fit in the pages the file has: each
    is then stored and answered 201; every other one is a 503 and left no row behind."""
    bodies = [make_event(identifiers={"cookie_id": _letters()}) for _ in range(120)]
    before = state_counts()
    caplog.clear()
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda body: client.post("/v1/events", json=body, headers=admin), bodies))
    refused = [a for a in answers if a.status_code == 503]
    accepted = [a for a in answers if a.status_code == 201]
    assert len(refused) + len(accepted) == len(answers), {a.status_code for a in answers}
    for answer in refused:
        _assert_unavailable(answer)
    if container.engine.dialect.name == "postgresql":
        assert not accepted
    assert len(refused) >= len(answers) // 2
    stored = state_counts()
    assert stored["events"] == before["events"] + len(accepted)
    records = _omnicrm_records(caplog)
    assert 1 <= len(records) <= len(refused)
    assert all(r.exc_info is None for r in records)


def test_the_same_writes_are_taken_with_room_on_the_disk(
    client: TestClient, admin: Headers, make_event: Callable[..., Json]
) -> None:
    assert client.post("/v1/customers", json=_big_customer(), headers=admin).status_code == 201
    assert client.post("/v1/events", json=make_event(), headers=admin).status_code == 201
