"""A reader sees one snapshot of the database, on both backends.

The API composes answers from several queries (a client's conversations: instances, their messages
and steps). On PostgreSQL's default READ COMMITTED each statement saw the newest commits, so a
conversation could be shown at its wait step without the message that step had just queued (a
journey test failed so under load); a reader must see no commit made after its first query."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from omnicrm.bootstrap import Container
from omnicrm.services.access import auth
from omnicrm.store.tables import users


def _add_user(container: Container, name: str) -> None:
    with container.uow() as uow:
        auth.create_user(
            uow.conn,
            username=name,
            role="auditor",
            password=None,
            branch=None,
            actor="test",
            now=datetime.now(UTC),
        )
        uow.commit()


def test_a_reader_does_not_see_commits_made_after_its_first_query(container: Container) -> None:
    count = select(func.count()).select_from(users)
    _add_user(container, "first")
    with container.reader() as conn:
        before = conn.execute(count).scalar_one()
        _add_user(container, "second")
        during = conn.execute(count).scalar_one()
    with container.reader() as conn:
        after = conn.execute(count).scalar_one()
    assert (before, after) == (1, 2)
    assert during == before, "the reader saw a row committed after its first query"
