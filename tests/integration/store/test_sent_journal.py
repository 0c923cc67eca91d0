"""The sent journal (store/dispatch.Journal, PostgreSQL): one line per accepted message, written on
its own connection, read by the next worker, and forgotten once it can no longer matter."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from omnicrm.bootstrap import Container
from omnicrm.store import dispatch
from omnicrm.store.tables import sent_journal


@pytest.fixture
def journal(container: Container) -> dispatch.Journal:
    if container.engine.dialect.name != "postgresql":
        pytest.skip("the journal is PostgreSQL's (SQLite sends one message per transaction)")
    return dispatch.Journal(container.engine)


def test_a_line_is_written_once_seen_by_the_next_worker_and_purged_after_the_expiry(
    container: Container, journal: dispatch.Journal, now: datetime
) -> None:
    journal.accepted("k-old", "smtp", "id-1", now - timedelta(hours=49))
    journal.accepted("k-new", "smtp", "id-2", now - timedelta(hours=1))
    journal.accepted("k-new", "smtp", "id-3", now)  # a second acceptance of the same key: kept once
    try:
        with container.reader() as conn:
            assert dispatch.sent_before(conn, ["k-old", "k-new", "k-none"]) == {
                "k-old": ("smtp", "id-1"),
                "k-new": ("smtp", "id-2"),
            }

        assert journal.purge(now - timedelta(hours=48)) == 1

        with container.reader() as conn:
            assert conn.execute(select(func.count()).select_from(sent_journal)).scalar_one() == 1
            assert set(dispatch.sent_before(conn, ["k-old", "k-new"])) == {"k-new"}
    finally:
        journal.close()
