"""Feedback (issue 19): signed provider webhooks, tracked opens and clicks, the unsubscribe link.

Everything is driven over HTTP as a provider, a client's mail program or a bank's system would; the
background decision worker advances the conversations. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from journey import Bank, Headers, Json
from pydantic import SecretStr
from sqlalchemy import func, select, update

from omnicrm.bootstrap import Container
from omnicrm.services.feedback import webhooks
from omnicrm.services.feedback.tokens import sign
from omnicrm.store.tables import events, feedback_inbox, outbox

LOAN = "loan-application-reminder"
SECRET = "provider-secret-for-tests-0123456789"


@pytest.fixture
def bank(client: TestClient, admin: Headers, container: Container, monkeypatch: pytest.MonkeyPatch) -> Bank:
    monkeypatch.setattr(container.settings, "webhook_secrets", {"mailer": SecretStr(SECRET)})
    monkeypatch.setattr(container.settings, "tracking_redirect_hosts", ["bank.example"])
    return Bank(client, admin, container)


def _push(bank: Bank) -> tuple[str, str, Json]:
    cid, cookie = bank.new_client()
    bank.post(
        cookie, "application.abandoned", product_class="consumer_loan", application_id="A-1", last_step="x"
    )
    waiting = bank.at_step(cid, LOAN, "wait_push")
    return cid, cookie, next(m for m in waiting["messages"] if m["channel"] == "webpush")


def _hook(bank: Bank, events_: list[Json], *, secret: str = SECRET, at: int | None = None) -> Any:
    body = json_bytes({"events": events_})
    signature = webhooks.sign(secret, body, int(time.time()) if at is None else at)
    headers = {"X-Omnicrm-Signature": signature, "Content-Type": "application/json"}
    return bank.client.post("/v1/webhooks/mailer", content=body, headers=headers)


def json_bytes(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)


def _report(message: Json, status: str, event_id: str) -> Json:
    return {
        "id": event_id,
        "message_id": message["idempotency_key"],
        "status": status,
        "occurred_at": "2026-12-02T10:00:00Z",
    }


def _count(container: Container, table: Any, *where: Any) -> int:
    with container.reader() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _token(container: Container, message: Json) -> str:
    return sign(message["idempotency_key"], container.settings.feedback_key.get_secret_value().encode())


def test_a_signed_click_report_moves_the_message_and_ends_the_wait_it_answers(bank: Bank) -> None:
    cid, _, push = _push(bank)

    answer = _hook(bank, [_report(push, "delivered", "e-1"), _report(push, "clicked", "e-2")])

    assert answer.status_code == 200, answer.text
    assert [i["outcome"] for i in answer.json()["items"]] == ["stored", "stored"]
    ended = bank.ended(cid, LOAN)
    assert (ended["status"], ended["outcome"]) == ("completed", "finished")
    assert ended["messages"][0]["status"] == "clicked"

    late = _hook(bank, [_report(push, "delivered", "e-3")])  # a late receipt never moves it back
    assert late.status_code == 200
    assert bank.conversation(cid, LOAN)["messages"][0]["status"] == "clicked"


def test_a_webhook_replayed_three_times_at_once_is_stored_and_advances_once(
    bank: Bank, container: Container
) -> None:
    people = [_push(bank) for _ in range(6)]
    reports = [_report(push, "opened", f"open-{i}") for i, (_, _, push) in enumerate(people)]
    answers: list[int] = []

    def deliver() -> None:
        answers.append(_hook(bank, reports).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert answers == [200, 200, 200]
    assert _count(container, feedback_inbox, feedback_inbox.c.source == "mailer") == len(people)
    assert _count(container, events, events.c.type == "message.reaction") == len(people)
    for cid, _, _ in people:
        on_email = bank.at_step(cid, LOAN, "wait_email")  # the opened push moved each wait once
        assert [m["channel"] for m in on_email["messages"]] == ["webpush", "email"]


@pytest.mark.parametrize(
    ("case", "status"),
    [("wrong secret", 401), ("stale signature", 401), ("unknown provider", 404), ("no header", 401)],
)
def test_unsigned_or_badly_signed_webhooks_are_refused_and_change_nothing(
    bank: Bank, container: Container, case: str, status: int
) -> None:
    _, _, push = _push(bank)
    body = [_report(push, "clicked", "forged")]
    if case == "wrong secret":
        answer = _hook(bank, body, secret="not-the-secret-at-all-0000000000")
    elif case == "stale signature":
        answer = _hook(bank, body, at=int(time.time()) - 3600)
    elif case == "unknown provider":
        raw = json_bytes({"events": body})
        headers = {"X-Omnicrm-Signature": webhooks.sign(SECRET, raw, int(time.time()))}
        answer = bank.client.post("/v1/webhooks/nobody", content=raw, headers=headers)
    else:
        answer = bank.client.post("/v1/webhooks/mailer", json={"events": body})

    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert _count(container, feedback_inbox) == 0


def test_one_bad_event_refuses_the_whole_call(bank: Bank, container: Container) -> None:
    _, _, push = _push(bank)
    good = _report(push, "delivered", "ok-1")
    bad = {**_report(push, "teleported", "bad-1")}
    answer = _hook(bank, [good, bad])
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert any("teleported" in e["reason"] for e in problem["errors"])
    assert _count(container, feedback_inbox) == 0


def test_the_open_pixel_counts_one_open_and_a_forged_token_gets_404(bank: Bank, container: Container) -> None:
    cid, _, push = _push(bank)
    token = _token(container, push)

    for _ in range(2):
        pixel = bank.client.get(f"/t/{token}/open.gif")
        assert pixel.status_code == 200
        assert pixel.headers["content-type"] == "image/gif"
    bank.at_step(cid, LOAN, "wait_email")
    assert _count(container, events, events.c.type == "message.reaction") == 1

    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert bank.client.get(f"/t/{forged}/open.gif").status_code == 404


def test_a_tracked_click_redirects_only_to_the_banks_hosts(bank: Bank, container: Container) -> None:
    cid, _, push = _push(bank)
    token = _token(container, push)

    evil = bank.client.get(
        f"/t/{token}/click", params={"u": "https://evil.example/x"}, follow_redirects=False
    )
    assert evil.status_code == 422
    assert bank.conversation(cid, LOAN)["status"] == "active"

    good = bank.client.get(
        f"/t/{token}/click", params={"u": "https://www.bank.example/loan"}, follow_redirects=False
    )
    assert good.status_code == 302
    assert good.headers["location"] == "https://www.bank.example/loan"
    assert bank.ended(cid, LOAN)["outcome"] == "finished"


@pytest.mark.parametrize("landing", [None, "https://www.bank.example/app"])
def test_a_tapped_push_link_without_a_target_is_a_click_and_lands_somewhere(
    bank: Bank, container: Container, monkeypatch: pytest.MonkeyPatch, landing: str | None
) -> None:
    monkeypatch.setattr(container.settings, "tracking_landing_url", landing)
    cid, _, push = _push(bank)
    token = _token(container, push)

    taps = [bank.client.get(f"/t/{token}/click", follow_redirects=False) for _ in range(2)]

    if landing is None:
        assert [t.status_code for t in taps] == [200, 200]
        assert "Дякуємо" in taps[0].text
    else:
        assert [(t.status_code, t.headers["location"]) for t in taps] == [(302, landing)] * 2
    assert bank.ended(cid, LOAN)["outcome"] == "finished"
    assert _count(container, events, events.c.type == "message.reaction") == 1  # a second tap: no news


def test_one_click_unsubscribe_withdraws_consent_on_that_channel_at_once(
    bank: Bank, container: Container
) -> None:
    cid, _, push = _push(bank)
    token = _token(container, push)
    page = bank.client.get(f"/t/{token}/unsubscribe")
    assert page.status_code == 200
    assert "<form" in page.text

    done = bank.client.post(f"/t/{token}/unsubscribe", content=b"List-Unsubscribe=One-Click")

    assert done.status_code == 200
    assert not bank.granted(cid, "webpush")
    assert bank.granted(cid, "email")
    assert bank.conversation(cid, LOAN)["messages"][0]["status"] == "unsubscribed"


def test_a_hard_bounce_closes_the_channel_for_that_person(bank: Bank, container: Container) -> None:
    cid, _, push = _push(bank)
    answer = _hook(bank, [_report(push, "bounced", "b-1")])
    assert answer.status_code == 200, answer.text
    profile = bank.client.get(f"/v1/customers/{cid}", headers=bank.admin).json()
    assert "webpush" in profile["constraints"]["channel_blacklist"]


def test_production_refuses_the_development_feedback_key() -> None:
    from pydantic import ValidationError

    from omnicrm.settings import Settings

    others = {"pseudonym_key": "p" * 40, "audit_key": "a" * 40, "database_url": "postgresql+psycopg://b@db/o"}
    with pytest.raises(ValidationError, match="OMNICRM_FEEDBACK_KEY"):
        Settings(env="production", **others)
    assert Settings(env="production", feedback_key="f" * 40, **others).feedback_key is not None


def test_a_receipt_with_a_garbled_signature_is_refused_not_an_error(bank: Bank) -> None:
    answer = bank.client.get("/v1/webhooks/kannel/dlr", params={"key": "k", "sig": "\u0080é", "status": "1"})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


def _mark_sent(container: Container, message: Json) -> None:
    """As dispatch does when the push service accepts it (no push service in these tests)."""
    with container.uow() as uow:
        uow.conn.execute(
            update(outbox).where(outbox.c.idempotency_key == message["idempotency_key"]).values(status="sent")
        )
        uow.commit()


def test_a_reaction_the_bank_reports_as_an_event_moves_its_message_as_a_webhook_would(
    bank: Bank, container: Container
) -> None:
    cid, cookie, push = _push(bank)
    _mark_sent(container, push)

    bank.react(cookie, push, "clicked")  # the app reports the tap: POST /v1/events, or the broker

    assert bank.ended(cid, LOAN)["messages"][0]["status"] == "clicked"
    bank.react(cookie, push, "opened")  # late and lower: recorded, the message stays clicked
    assert bank.conversation(cid, LOAN)["messages"][0]["status"] == "clicked"


def test_a_reaction_to_a_message_never_sent_or_someone_elses_leaves_it_alone(
    bank: Bank, container: Container
) -> None:
    cid, cookie, queued = _push(bank)  # still queued: nothing was sent to react to
    other, _, theirs = _push(bank)
    _mark_sent(container, theirs)

    bank.react(cookie, queued, "clicked")
    bank.react(cookie, theirs, "clicked")  # this client names another client's message
    bank.settled()

    assert bank.conversation(cid, LOAN)["messages"][0]["status"] == "queued"
    assert bank.conversation(other, LOAN)["messages"][0]["status"] == "sent"
