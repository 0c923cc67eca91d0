"""Dispatch (issue 19): a queued message is checked once more, rendered, sent and recorded.

Conversations are driven over HTTP as a bank's systems would; the dispatcher runs here, on the
test's own clock, with scripted providers behind the channel interface (the adapters themselves are
tested against real SMTP, Kannel and push peers in tests/integration/channels/). On both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from journey import Bank, Headers, Json
from sqlalchemy import select

from omnicrm.bootstrap import Container
from omnicrm.channels.base import Accepted, Channel, Outgoing, Permanent, SendResult, Transient
from omnicrm.services.dispatch.worker import DispatchConfig, Dispatcher
from omnicrm.store.tables import outbox

RENEWAL = "deposit-renewal"


class Scripted(Channel):
    """A provider that answers from a script (then accepts) and remembers what it was given."""

    channel: ClassVar[str] = "email"

    def __init__(self, answers: list[SendResult] | None = None) -> None:
        super().__init__("scripted")
        self.answers = list(answers or [])
        self.sent: list[Outgoing] = []
        self.lock = threading.Lock()

    def _send(self, message: Outgoing) -> SendResult:
        with self.lock:
            self.sent.append(message)
            if self.answers:
                return self.answers.pop(0)
            return Accepted(self.provider, f"p-{len(self.sent)}")


@pytest.fixture
def bank(client: TestClient, admin: Headers, container: Container) -> Bank:
    return Bank(client, admin, container)


class Clock:
    """Real time, moved on by `offset` as a test lets time pass."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dispatcher(container: Container, clock: Clock) -> Callable[[Channel], Dispatcher]:
    def make(adapter: Channel) -> Dispatcher:
        config = DispatchConfig(max_attempts=3, feedback_key=b"k" * 32, public_url="https://crm.bank.test")
        return Dispatcher(
            container.uow, container.current_library, {adapter.channel: adapter}, config, clock=clock
        )

    return make


def _renewal(bank: Bank, *, email: bool = True) -> tuple[str, Json]:
    cid, cookie = bank.new_client()
    if email:
        identifier = {"kind": "email", "value": f"{cookie}@example.com"}
        response = bank.client.post(f"/v1/customers/{cid}/identifiers", json=identifier, headers=bank.admin)
        assert response.status_code == 200, response.text
    bank.post(cookie, "deposit.maturing", contract_number="D-1", maturity_date="2026-12-20", amount=5000)
    conversation = bank.at_step(cid, RENEWAL, "wait_email")
    return cid, conversation


def _message(bank: Bank, cid: str) -> Json:
    return dict(bank.conversation(cid, RENEWAL)["messages"][0])


def _statuses(bank: Bank, cid: str) -> list[Json]:
    response = bank.client.get(f"/v1/customers/{cid}/timeline?type=crm.message.status", headers=bank.admin)
    assert response.status_code == 200, response.text
    return [i["attributes"] for i in response.json()["items"]]


def test_a_queued_email_is_rendered_in_the_clients_language_sent_and_shown_sent(
    bank: Bank, dispatcher: Callable[[Channel], Dispatcher]
) -> None:
    cid, _ = _renewal(bank)
    provider = Scripted()
    cookie = bank.client.get(f"/v1/customers/{cid}", headers=bank.admin).json()

    done = dispatcher(provider).drain()

    assert [d.outcome for d in done] == ["sent"]
    [sent] = provider.sent
    assert sent.to == next(i["value"] for i in cookie["identifiers"] if i["kind"] == "email")
    assert sent.subject == "Ваш депозит завершується 2026-12-20"
    assert "Olena" in sent.body
    assert "5000" in sent.body
    assert sent.tracking is not None
    assert sent.tracking.click_url.startswith("https://crm.bank.test/t/")
    message = _message(bank, cid)
    assert (message["status"], message["provider"], message["provider_id"]) == ("sent", "scripted", "p-1")
    assert _statuses(bank, cid) == [
        {"message_id": message["idempotency_key"], "status": "sent", "provider": "scripted"}
    ]
    assert dispatcher(provider).drain() == []  # sent once: nothing left to claim
    assert len(provider.sent) == 1


def test_a_transient_failure_is_retried_after_back_off_with_the_same_idempotency_key(
    bank: Bank, dispatcher: Callable[[Channel], Dispatcher], clock: Clock
) -> None:
    cid, _ = _renewal(bank)
    provider = Scripted([Transient("451 try later")])
    work = dispatcher(provider)

    assert [d.outcome for d in work.drain()] == ["retry"]
    waiting = _message(bank, cid)
    assert (waiting["status"], waiting["attempts"]) == ("queued", 1)
    assert "451 try later" in waiting["status_reason"]
    assert work.drain() == []  # not before its back-off has passed

    clock.offset += timedelta(hours=2)
    assert [d.outcome for d in work.drain()] == ["sent"]
    first, second = provider.sent
    assert first.idempotency_key == second.idempotency_key
    assert _message(bank, cid)["attempts"] == 2


def test_a_permanent_failure_and_exhausted_retries_go_dead_with_their_reason(
    bank: Bank, dispatcher: Callable[[Channel], Dispatcher], clock: Clock
) -> None:
    cid, _ = _renewal(bank)
    dead_now = Scripted([Permanent("550 no such mailbox")])
    assert [d.outcome for d in dispatcher(dead_now).drain()] == ["dead"]
    message = _message(bank, cid)
    assert (message["status"], message["status_reason"]) == ("dead", "550 no such mailbox")
    assert _statuses(bank, cid)[0]["status"] == "dead"

    other, _ = _renewal(bank)
    flaky = Scripted([Transient("timeout")] * 5)
    work = dispatcher(flaky)
    for _ in range(3):
        work.drain()
        clock.offset += timedelta(hours=2)
    message = _message(bank, other)
    assert (message["status"], message["attempts"]) == ("dead", 3), message
    assert message["status_reason"] == "gave up after 3 attempts: timeout"


def test_consent_withdrawn_after_the_decision_withdraws_the_message_unsent(
    bank: Bank, dispatcher: Callable[[Channel], Dispatcher]
) -> None:
    cid, _ = _renewal(bank)
    withdrawal = {"channel": "email", "purpose": "marketing", "granted": False, "source": "branch"}
    response = bank.client.post(f"/v1/customers/{cid}/consents", json=withdrawal, headers=bank.admin)
    assert response.status_code == 201, response.text
    provider = Scripted()

    assert [d.outcome for d in dispatcher(provider).drain()] == ["withdrawn"]
    assert provider.sent == []
    message = _message(bank, cid)
    assert message["status"] == "withdrawn"
    assert message["status_reason"] == "no marketing consent on email"


def test_a_message_to_a_profile_without_an_address_is_dead_with_that_reason(
    bank: Bank, dispatcher: Callable[[Channel], Dispatcher]
) -> None:
    cid, _ = _renewal(bank, email=False)
    provider = Scripted()
    assert [d.outcome for d in dispatcher(provider).drain()] == ["dead"]
    assert provider.sent == []
    assert _message(bank, cid)["status_reason"] == "no e-mail address on the profile"


def test_two_workers_at_once_send_each_message_once(
    bank: Bank, dispatcher: Callable[[Channel], Dispatcher], container: Container
) -> None:
    people = [_renewal(bank)[0] for _ in range(12)]
    provider = Scripted()
    workers = [dispatcher(provider) for _ in range(4)]
    threads = [threading.Thread(target=w.drain) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    keys = [m.idempotency_key for m in provider.sent]
    assert len(keys) == len(set(keys)) == len(people)
    with container.reader() as conn:
        statuses = conn.execute(select(outbox.c.status).where(outbox.c.channel == "email")).scalars().all()
    assert sorted(statuses) == ["sent"] * len(people)
