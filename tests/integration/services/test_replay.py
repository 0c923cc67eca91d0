"""What-if replay: stored events through one scenario version, counted, with nothing written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Table, func, select
from test_orchestration import LOAN, T0, Loop

from omnicrm.bootstrap import Container
from omnicrm.services.conversations.replay import ReplayReport, replay
from omnicrm.store.tables import audit_log, decisions, events, instances, outbox

H = timedelta(hours=1)
WRITTEN: tuple[Table, ...] = (decisions, instances, outbox, events, audit_log)


@pytest.fixture
def loop(container: Container) -> Loop:
    return Loop(container)


def _counts(loop: Loop) -> dict[str, int]:
    with loop.container.reader() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in WRITTEN}


def _run(loop: Loop, start: timedelta = -24 * H, end: timedelta = 120 * H) -> ReplayReport:
    library = loop.container.library
    with loop.container.reader() as conn:
        return replay(conn, library, library.current[LOAN], T0 + start, T0 + end)


def _three_clients(loop: Loop) -> None:
    """A finishes her application after the e-mail; B never does; C gave no marketing consent."""
    _, a = loop.new_client()
    _, b = loop.new_client()
    _, c = loop.new_client(channels=())
    loop.abandon(a, T0)
    loop.abandon(b, T0 + H)
    loop.abandon(c, T0 + 2 * H)
    completed = {"product_class": "consumer_loan", "application_id": "A-1"}
    loop.emit(a, "application.completed", T0 + 30 * H, completed)


def test_replay_counts_entries_contacts_suppressions_and_goals(loop: Loop) -> None:
    _three_clients(loop)

    report = _run(loop)

    assert report.events == 4  # three triggers and one goal
    assert (report.entered, report.clients, report.decisions) == (2, 2, 3)
    assert dict(report.suppressed) == {"channel": 1}
    # both get the push at once and the e-mail a day later; only B, silent for 48 h more, is called
    assert dict(report.contacted) == {"webpush": 2, "email": 2}
    assert report.tasks == 1
    assert (report.goal_reached, report.still_running) == (1, 0)


def test_replay_writes_nothing(loop: Loop) -> None:
    _three_clients(loop)
    before = _counts(loop)

    _run(loop)

    assert _counts(loop) == before
    assert before["decisions"] == 0


def test_the_end_of_the_period_stops_the_clock(loop: Loop) -> None:
    _three_clients(loop)

    report = _run(loop, end=26 * H)  # the e-mails (due at +24 h and +25 h) go; the goal is not seen

    assert dict(report.contacted) == {"webpush": 2, "email": 2}
    assert (report.tasks, report.goal_reached, report.still_running) == (0, 0, 2)


def test_events_outside_the_period_are_not_read(loop: Loop) -> None:
    _three_clients(loop)

    report = _run(loop, start=3 * H)  # after the three abandons

    assert report.events == 1  # the completion only
    assert (report.entered, report.decisions) == (0, 0)


def test_an_empty_period_is_refused(loop: Loop) -> None:
    with pytest.raises(ValueError, match="after"):
        _run(loop, start=H, end=H)
