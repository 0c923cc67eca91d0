"""Call-centre tasks over HTTP, on SQLite and PostgreSQL: a conversation escalates to a call, the
dispatch worker opens the task (`open_task`, as it will), operators claim and close it, and the
disposition moves the conversation waiting on that task - and only that one."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from journey import Bank
from sqlalchemy import func, select, update

from omnicrm.bootstrap import Container
from omnicrm.services.access import auth
from omnicrm.services.callcentre.queues import load_queues
from omnicrm.services.callcentre.tasks import open_task
from omnicrm.services.conversations.datafiles import read_library
from omnicrm.settings import SHIPPED_SCENARIOS
from omnicrm.store.tables import audit_log, consents, events, outbox, tasks

SCENARIO = "test-call-then-wait"
# A conversation that waits for its call's outcome: none of the shipped scenarios waits after a call
# (they end), so the test publishes this one beside them.
CALL_THEN_WAIT = f"""
id: {SCENARIO}
version: 1
name: Test - a call, then its outcome decides
purpose: commercial
priority: 50
trigger:
  event: crm.branch.visit
audience: customer.status == "client"
goal:
  event: crm.upsell.succeeded
reentry: {{mode: after_days, days: 30}}
start: call
steps:
  call:
    escalate: {{queue: sales, reason: Test - offer by phone}}
    next: wait_call
  wait_call:
    wait: 24h
    routes:
      - {{when: 'reaction == "accepted"', goto: won}}
      - {{goto: done}}
  won:
    end: offer_accepted
  done:
    end: finished
"""
QUEUES = load_queues(SHIPPED_SCENARIOS / "queues.yaml")


@pytest.fixture
def bank(
    client: TestClient, container: Container, headers_for: Callable[[str], dict[str, str]], tmp_path: Path
) -> Iterator[Bank]:
    directory = tmp_path / "scenarios"
    shutil.copytree(SHIPPED_SCENARIOS, directory)
    (directory / "templates" / f"{SCENARIO}.yaml").write_text(CALL_THEN_WAIT, encoding="utf-8")
    shipped, generation = container.library, container.generation
    container.library = read_library(directory, container.catalogue).library
    try:
        yield Bank(client, headers_for("admin"), container)
    finally:
        container.library, container.generation = shipped, generation


def _task_row(container: Container, cid: str) -> dict[str, Any]:
    with container.reader() as conn:
        row = conn.execute(select(outbox).where(outbox.c.customer_id == cid, outbox.c.kind == "task")).first()
    assert row is not None
    return dict(row._mapping)


def _dispatch(container: Container, row: dict[str, Any]) -> bool:
    """What the dispatch worker does with an outbox row of kind `task` (channel callcentre)."""
    with container.uow() as uow:
        created = open_task(uow.conn, row, queues=QUEUES, now=datetime.now(UTC))
        uow.commit()
    return created


def _call_waiting(bank: Bank) -> tuple[str, str, str]:
    """A client whose conversation queued a call and waits for its outcome; the task is opened.
    Returns (customer id, cookie, task id)."""
    cid, cookie = bank.new_client()
    bank.post(cookie, "crm.branch.visit", "branch", branch="kyiv-1")
    bank.at_step(cid, SCENARIO, "wait_call")
    row = _task_row(bank.container, cid)
    assert _dispatch(bank.container, row)
    return cid, cookie, str(row["idempotency_key"])


def _path(task_id: str, action: str = "") -> str:
    return f"/v1/tasks/{task_id}{action}"


def _reactions(container: Container, cid: str, message_id: str) -> list[dict[str, Any]]:
    with container.reader() as conn:
        rows = conn.execute(
            select(events.c.attributes).where(
                events.c.customer_id == cid, events.c.type == "message.reaction"
            )
        ).all()
    return [r.attributes for r in rows if r.attributes["message_id"] == message_id]


def test_open_task_is_idempotent_and_takes_the_queue_data(bank: Bank) -> None:
    cid, _, task_id = _call_waiting(bank)
    row = _task_row(bank.container, cid)
    assert not _dispatch(bank.container, row)  # a retried dispatch changes nothing
    with bank.container.reader() as conn:
        assert conn.execute(select(func.count()).select_from(tasks)).scalar_one() == 1
    task = bank.client.get(_path(task_id), headers=bank.admin).json()
    expected = QUEUES.plan("sales", "commercial", datetime.now(UTC))
    assert (task["queue"], task["skill"], task["priority"], task["status"]) == (
        "sales",
        "sales",
        expected.priority,
        "open",
    )
    created = datetime.fromisoformat(task["created_at"])
    assert datetime.fromisoformat(task["due_at"]) - created == timedelta(
        minutes=QUEUES.queues["sales"].due_minutes
    )
    assert datetime.fromisoformat(task["sla_at"]) - created == timedelta(
        minutes=QUEUES.sla_minutes[expected.priority]
    )


def test_closure_advances_the_conversation_waiting_on_that_task(
    bank: Bank, headers_for: Callable[[str], dict[str, str]]
) -> None:
    cid, _, task_id = _call_waiting(bank)
    operator = headers_for("operator")
    claimed = bank.client.post(_path(task_id, ":claim"), headers=operator)
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["status"] == "claimed"
    closed = bank.client.post(
        _path(task_id, ":close"),
        json={"disposition": "offer_accepted", "note": "wants 12 months"},
        headers=operator,
    )
    assert closed.status_code == 200, closed.text
    assert (closed.json()["status"], closed.json()["disposition"]) == ("closed", "offer_accepted")
    ended = bank.ended(cid, SCENARIO)
    assert (ended["outcome"], ended["last_reaction"]) == ("offer_accepted", "accepted")
    assert _reactions(bank.container, cid, task_id) == [{"message_id": task_id, "reaction": "accepted"}]
    with bank.container.reader() as conn:
        actions = (
            conn.execute(select(audit_log.c.action).where(audit_log.c.target == task_id)).scalars().all()
        )
    assert sorted(actions) == ["task.claim", "task.close"]
    # the same closure again is answered as it was; another one is a conflict
    again = bank.client.post(
        _path(task_id, ":close"),
        json={"disposition": "offer_accepted", "note": "wants 12 months"},
        headers=operator,
    )
    assert (again.status_code, again.json()) == (200, closed.json())
    other = bank.client.post(_path(task_id, ":close"), json={"disposition": "no_answer"}, headers=operator)
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert len(_reactions(bank.container, cid, task_id)) == 1


def test_late_closure_is_on_the_timeline_and_moves_nothing(
    bank: Bank, headers_for: Callable[[str], dict[str, str]]
) -> None:
    cid, _, task_id = _call_waiting(bank)
    operator = headers_for("operator")
    assert bank.client.post(_path(task_id, ":claim"), headers=operator).status_code == 200
    instance = bank.conversation(cid, SCENARIO)
    bank.expire(instance["id"])  # nobody reported the call in time: the wait runs out
    assert bank.ended(cid, SCENARIO)["outcome"] == "finished"
    closed = bank.client.post(
        _path(task_id, ":close"), json={"disposition": "offer_accepted"}, headers=operator
    )
    assert closed.status_code == 200, closed.text
    bank.until(lambda: _reactions(bank.container, cid, task_id), "the closure on the timeline")
    bank.settled()
    after = bank.conversation(cid, SCENARIO)
    assert (after["outcome"], after["last_reaction"], after["status"]) == ("finished", None, "completed")


def test_two_operators_claim_at_once_one_wins(
    bank: Bank, headers_for: Callable[[str], dict[str, str]]
) -> None:
    _, _, task_id = _call_waiting(bank)
    operators = [headers_for("operator") for _ in range(4)]
    barrier = threading.Barrier(len(operators))
    answers: list[int] = []

    def claim(headers: dict[str, str]) -> None:
        barrier.wait()
        answers.append(bank.client.post(_path(task_id, ":claim"), headers=headers).status_code)

    threads = [threading.Thread(target=claim, args=(h,)) for h in operators]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 409, 409, 409]
    with bank.container.reader() as conn:
        row = conn.execute(select(tasks).where(tasks.c.id == task_id)).one()
        claims = conn.execute(
            select(func.count()).where(audit_log.c.target == task_id, audit_log.c.action == "task.claim")
        ).scalar_one()
    assert row.status == "claimed"
    assert claims == 1


def test_only_the_claimer_or_a_supervisor_closes(
    bank: Bank, headers_for: Callable[[str], dict[str, str]]
) -> None:
    _, _, task_id = _call_waiting(bank)
    mine, theirs = headers_for("operator"), headers_for("operator")
    assert bank.client.post(_path(task_id, ":claim"), headers=mine).status_code == 200
    refused = bank.client.post(_path(task_id, ":close"), json={"disposition": "resolved"}, headers=theirs)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert bank.client.post(_path(task_id, ":claim"), headers=theirs).status_code == 409
    assert bank.client.get(_path(task_id), headers=mine).json()["status"] == "claimed"
    marketer = bank.client.post(
        _path(task_id, ":close"), json={"disposition": "resolved"}, headers=headers_for("marketer")
    )
    assert marketer.status_code == 403
    supervised = bank.client.post(
        _path(task_id, ":close"), json={"disposition": "resolved"}, headers=bank.admin
    )
    assert supervised.status_code == 200, supervised.text
    assert supervised.json()["status"] == "closed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"disposition": "sold_everything"}, "disposition"),
        ({"disposition": "resolved", "colour": "red"}, "colour"),
        ({"note": "no disposition"}, "disposition"),
    ],
)
def test_bad_closure_is_refused_and_changes_nothing(
    bank: Bank, headers_for: Callable[[str], dict[str, str]], body: dict[str, Any], field: str
) -> None:
    cid, _, task_id = _call_waiting(bank)
    operator = headers_for("operator")
    assert bank.client.post(_path(task_id, ":claim"), headers=operator).status_code == 200
    refused = bank.client.post(_path(task_id, ":close"), json=body, headers=operator)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in refused.json()["errors"]}
    assert bank.client.get(_path(task_id), headers=operator).json()["status"] == "claimed"
    assert _reactions(bank.container, cid, task_id) == []


def test_card_number_in_the_note_is_refused(bank: Bank, headers_for: Callable[[str], dict[str, str]]) -> None:
    cid, _, task_id = _call_waiting(bank)
    operator = headers_for("operator")
    assert bank.client.post(_path(task_id, ":claim"), headers=operator).status_code == 200
    body = {"disposition": "resolved", "note": "client read out 4111 1111 1111 1111"}
    refused = bank.client.post(_path(task_id, ":close"), json=body, headers=operator)
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:omnicrm:problem:card_number_refused"
    assert "4111" not in refused.text
    task = bank.client.get(_path(task_id), headers=operator).json()
    assert (task["status"], task["note"]) == ("claimed", "Test - offer by phone")  # the reason it was queued
    assert _reactions(bank.container, cid, task_id) == []


def test_do_not_call_withdraws_the_call_centre_consent(
    bank: Bank, headers_for: Callable[[str], dict[str, str]]
) -> None:
    cid, _, task_id = _call_waiting(bank)
    operator = headers_for("operator")
    assert bank.client.post(_path(task_id, ":claim"), headers=operator).status_code == 200
    assert bank.granted(cid, "callcentre")
    closed = bank.client.post(_path(task_id, ":close"), json={"disposition": "do_not_call"}, headers=operator)
    assert closed.status_code == 200, closed.text
    assert not bank.granted(cid, "callcentre")
    assert bank.granted(cid, "email")  # only the call centre
    with bank.container.reader() as conn:
        ledger = (
            conn.execute(
                select(consents.c.source).where(consents.c.customer_id == cid, consents.c.granted.is_(False))
            )
            .scalars()
            .all()
        )
    assert ledger == ["message.reaction"]


def test_goal_reached_withdraws_the_task(bank: Bank, headers_for: Callable[[str], dict[str, str]]) -> None:
    cid, cookie, task_id = _call_waiting(bank)
    bank.post(cookie, "crm.upsell.succeeded", "branch", product_class="deposit")
    assert bank.ended(cid, SCENARIO)["outcome"] == "goal_reached"
    task = bank.until(
        lambda: (
            (t := bank.client.get(_path(task_id), headers=bank.admin).json())["status"] == "withdrawn" and t
        ),
        "the task withdrawn",
    )
    assert task["note"].startswith("withdrawn: goal reached")
    refused = bank.client.post(_path(task_id, ":claim"), headers=headers_for("operator"))
    assert refused.status_code == 409
    assert "withdrawn" in refused.json()["detail"]


def test_operator_at_capacity_gets_409_with_the_reason(
    bank: Bank, headers_for: Callable[[str], dict[str, str]]
) -> None:
    ids = [_call_waiting(bank)[2] for _ in range(QUEUES.operator_capacity + 1)]
    operator = headers_for("operator")
    for task_id in ids[:-1]:
        assert bank.client.post(_path(task_id, ":claim"), headers=operator).status_code == 200
    full = bank.client.post(_path(ids[-1], ":claim"), headers=operator)
    assert full.status_code == 409
    assert "capacity" in full.json()["detail"]
    assert bank.client.get(_path(ids[-1]), headers=operator).json()["status"] == "open"
    # closing one frees a slot
    closed = bank.client.post(_path(ids[0], ":close"), json={"disposition": "no_answer"}, headers=operator)
    assert closed.status_code == 200
    assert bank.client.post(_path(ids[-1], ":claim"), headers=operator).status_code == 200


def test_list_pages_by_priority_then_due_time(
    bank: Bank, container: Container, headers_for: Callable[[str], dict[str, str]]
) -> None:
    ids = [_call_waiting(bank)[2] for _ in range(5)]
    # the queue data decides priority and due time; here the rows are made to differ
    shuffle = {ids[0]: (3, 0), ids[1]: (1, 50), ids[2]: (1, 10), ids[3]: (2, 5), ids[4]: (1, 10)}
    base = datetime.now(UTC)
    with container.uow() as uow:
        for task_id, (priority, minutes) in shuffle.items():
            uow.conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id)
                .values(priority=priority, due_at=base + timedelta(minutes=minutes))
            )
        uow.commit()
    expected = sorted(ids, key=lambda i: (shuffle[i][0], shuffle[i][1], i))
    operator = headers_for("operator")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"queue": "sales", "status": "open", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = bank.client.get("/v1/tasks", params=params, headers=operator)
        assert page.status_code == 200, page.text
        seen += [t["id"] for t in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3
    assert bank.client.get("/v1/tasks", params={"queue": "cards"}, headers=operator).json()["items"] == []
    bad = bank.client.get("/v1/tasks", params={"cursor": "not-a-cursor"}, headers=operator)
    assert bad.status_code == 422
    assert bank.client.get("/v1/tasks", headers=headers_for("integration")).status_code == 403


def test_a_task_dispatched_after_its_goal_opens_withdrawn(
    bank: Bank, headers_for: Callable[[str], dict[str, str]]
) -> None:
    cid, cookie = bank.new_client()
    bank.post(cookie, "crm.branch.visit", "branch", branch="kyiv-1")
    bank.at_step(cid, SCENARIO, "wait_call")
    row = _task_row(bank.container, cid)  # the dispatch worker holds the row...
    bank.post(cookie, "crm.upsell.succeeded", "branch", product_class="deposit")
    assert bank.ended(cid, SCENARIO)["outcome"] == "goal_reached"
    assert _dispatch(bank.container, row)  # ...and opens the task after the goal was reached
    task = bank.client.get(_path(str(row["idempotency_key"])), headers=bank.admin).json()
    assert (task["status"], task["note"]) == ("withdrawn", "withdrawn: conversation goal_reached")
    assert bank.client.post(_path(task["id"], ":claim"), headers=headers_for("operator")).status_code == 409


def _branch_operator(container: Container, branch: str) -> dict[str, str]:
    username = f"operator-{branch}-{uuid.uuid4().hex[:6]}"
    with container.uow() as uow:
        at = datetime.now(UTC)
        auth.create_user(
            uow.conn, username=username, role="operator", password=None, branch=branch, actor="test", now=at
        )
        token = auth.issue_token(uow.conn, username=username, name="test", ttl=None, actor="test", now=at)
        uow.commit()
    return {"Authorization": f"Bearer {token}"}


def test_a_branch_desk_is_its_own_operators_only(bank: Bank, container: Container) -> None:
    central, desk = _call_waiting(bank)[2], _call_waiting(bank)[2]
    with container.uow() as uow:
        uow.conn.execute(update(tasks).where(tasks.c.id == desk).values(branch="kyiv-1"))
        uow.commit()
    kyiv, lviv = _branch_operator(container, "kyiv-1"), _branch_operator(container, "lviv-2")
    seen = {t["id"] for t in bank.client.get("/v1/tasks", headers=lviv).json()["items"]}
    assert seen == {central}
    assert bank.client.get(_path(desk), headers=lviv).status_code == 404
    assert bank.client.post(_path(desk, ":claim"), headers=lviv).status_code == 404
    assert {t["id"] for t in bank.client.get("/v1/tasks", headers=kyiv).json()["items"]} == {central, desk}
    assert bank.client.post(_path(desk, ":claim"), headers=kyiv).status_code == 200
    assert bank.client.post(_path(central, ":claim"), headers=lviv).status_code == 200
