"""The paper's conversation cases, driven over HTTP as a bank's systems would (issue 17, points 1-6).

Each test posts clients, events, reactions and operator outcomes to the REST API and reads what the
background decision worker did from the conversations and decisions APIs, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from journey import Bank, Headers, Json
from typer.testing import CliRunner

from omnicrm.bootstrap import Container
from omnicrm.cli import app

LOAN = "loan-application-reminder"
RENEWAL = "deposit-renewal"


@pytest.fixture
def bank(client: TestClient, admin: Headers, container: Container) -> Bank:
    return Bank(client, admin, container)


def _messages(conversation: Json, channel: str | None = None) -> list[Json]:
    return [m for m in conversation["messages"] if channel is None or m["channel"] == channel]


def _abandon_loan(bank: Bank, cookie: str) -> str:
    return bank.post(
        cookie,
        "application.abandoned",
        product_class="consumer_loan",
        application_id="A-1",
        last_step="documents",
    )


# ---------------------------------------------------------------- 1. a reaction belongs to its message


def test_a_stale_reaction_to_an_earlier_message_does_not_move_the_next_wait(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    _abandon_loan(bank, cookie)
    waiting = bank.at_step(cid, LOAN, "wait_push")
    push = _messages(waiting, "webpush")[0]
    bank.react(cookie, push, "opened")  # not a click: the push wait moves on to the e-mail
    on_email = bank.at_step(cid, LOAN, "wait_email")
    assert len(_messages(on_email, "email")) == 1

    bank.react(cookie, push, "clicked")  # late, and to the push: the e-mail wait is not its wait
    bank.settled()

    now = bank.conversation(cid, LOAN)
    assert (now["status"], now["step"]) == ("active", "wait_email")
    assert [m["channel"] for m in _messages(now)] == ["webpush", "email"]
    assert all(m["kind"] == "message" for m in _messages(now))  # no call-centre task either


@pytest.mark.parametrize("together", ["one batch", "two requests at once"])
def test_two_reactions_to_one_message_advance_its_wait_once(bank: Bank, together: str) -> None:
    cid, cookie = bank.new_client()
    _abandon_loan(bank, cookie)
    push = _messages(bank.at_step(cid, LOAN, "wait_push"), "webpush")[0]
    first = bank.event(
        cookie, "message.reaction", "webpush", message_id=push["idempotency_key"], reaction="opened"
    )
    second = bank.event(
        cookie, "message.reaction", "webpush", message_id=push["idempotency_key"], reaction="replied"
    )

    if together == "one batch":
        bank.post_batch([first, second])
    else:
        answers: list[int] = []

        def send(body: Json) -> None:
            answers.append(bank.client.post("/v1/events", json=body, headers=bank.admin).status_code)

        threads = [threading.Thread(target=send, args=(b,)) for b in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [201, 201]

    on_email = bank.at_step(cid, LOAN, "wait_email")
    bank.settled()
    now = bank.conversation(cid, LOAN)
    assert (now["status"], now["step"]) == ("active", "wait_email"), (
        "the second reaction moved the e-mail wait"
    )
    assert [m["channel"] for m in _messages(now)] == ["webpush", "email"]
    assert now["id"] == on_email["id"]


def test_a_reaction_to_the_awaited_message_still_moves_its_wait(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    _abandon_loan(bank, cookie)
    push = _messages(bank.at_step(cid, LOAN, "wait_push"), "webpush")[0]
    bank.react(cookie, push, "opened")
    email = _messages(bank.at_step(cid, LOAN, "wait_email"), "email")[0]

    bank.react(cookie, email, "clicked")

    ended = bank.ended(cid, LOAN)
    assert (ended["status"], ended["step"], ended["outcome"]) == ("completed", "done", "finished")


# ---------------------------------------------------------------- 2. hard rules at every step


def test_a_complaint_stops_a_running_commercial_conversation_at_its_next_step(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    _abandon_loan(bank, cookie)
    waiting = bank.at_step(cid, LOAN, "wait_push")
    bank.post(cookie, "crm.complaint.registered", complaint_id="CMP-7", topic="fees")
    bank.settled(0.3)

    bank.expire(waiting["id"])  # 24 h pass without a reaction: the e-mail step comes up

    ended = bank.ended(cid, LOAN)
    assert (ended["status"], ended["outcome"]) == ("cancelled", "cancelled_by_open_complaint")
    assert _messages(ended, "email") == [], "the e-mail went out with a complaint open"
    push = _messages(ended, "webpush")[0]
    assert push["status"] == "withdrawn"
    assert "open complaint" in push["status_reason"]
    step = ended["steps"][-1]
    assert (step["action"], step["step"], step["channel"]) == ("cancel", "email", "email")
    assert [r["rule"] for r in step["rules"] if r["effect"] == "suppress"] == ["open_complaint"]


def test_do_not_contact_set_mid_conversation_stops_the_follow_up(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    _abandon_loan(bank, cookie)
    waiting = bank.at_step(cid, LOAN, "wait_push")
    patched = bank.client.patch(
        f"/v1/customers/{cid}", json={"constraints": {"do_not_contact": True}}, headers=bank.admin
    )
    assert patched.status_code == 200, patched.text

    bank.expire(waiting["id"])

    ended = bank.ended(cid, LOAN)
    assert (ended["status"], ended["outcome"]) == ("cancelled", "cancelled_by_do_not_contact")
    assert _messages(ended, "email") == []


# ---------------------------------------------------------------- 3. nothing is skipped silently


def test_a_call_step_without_call_centre_consent_is_stored_as_skipped(bank: Bank) -> None:
    cid, cookie = bank.new_client(consents=("webpush", "email"))
    _abandon_loan(bank, cookie)
    bank.expire(bank.at_step(cid, LOAN, "wait_push")["id"])
    bank.expire(bank.at_step(cid, LOAN, "wait_email")["id"])

    ended = bank.ended(cid, LOAN)
    assert (ended["status"], ended["outcome"]) == ("completed", "finished")
    assert [m["channel"] for m in _messages(ended)] == ["webpush", "email"]
    skipped = [s for s in ended["steps"] if s["action"] == "skip"]
    assert [(s["step"], s["channel"]) for s in skipped] == [("call", "callcentre")]
    assert "no marketing consent on callcentre" in skipped[0]["explanation"]
    # the same record, in the same words, in the decisions API
    stored = [d for d in bank.decisions(cid) if d.get("step") == "call"]
    assert [d["explanation"] for d in stored] == [skipped[0]["explanation"]]
    assert "skip this step via callcentre" in stored[0]["explanation"]
    # and in `omnicrm explain`, in the same words
    env = {
        "OMNICRM_DATABASE_URL": bank.container.engine.url.render_as_string(hide_password=False),
        "OMNICRM_CATALOGUE_FILE": str(bank.container.settings.catalogue_file),
        "OMNICRM_SCENARIOS_DIR": str(bank.container.settings.scenarios_dir),
        "OMNICRM_ENV": "test",
    }
    printed = CliRunner().invoke(app, ["explain", cid, "--limit", "50"], env=env)
    assert printed.exit_code == 0, printed.output
    flat = " ".join(printed.output.split())
    assert " ".join(stored[0]["explanation"].split()) in flat


def test_a_follow_up_held_by_the_cap_is_stored_with_its_rule(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    _abandon_loan(bank, cookie)  # commercial push: the first of two contacts a day
    waiting = bank.at_step(cid, LOAN, "wait_push")
    bank.post(cookie, "deposit.maturing", contract_number="DEP-1", maturity_date="2026-12-30")
    bank.at_step(cid, RENEWAL, "wait_email")  # the retention e-mail: the second contact today

    bank.expire(waiting["id"])  # the loan e-mail would be the third today

    held = bank.until(
        lambda: [s for s in bank.conversation(cid, LOAN)["steps"] if s["action"] == "hold"], "a held step"
    )
    now = bank.conversation(cid, LOAN)
    assert (now["status"], now["step"]) == ("active", "email")
    assert now["due_at"] == held[0]["due_at"]
    assert next(r["rule"] for r in held[0]["rules"] if r["effect"] == "delay") == "frequency_cap"
    assert "hold this step via email until" in held[0]["explanation"]
    assert "contact limit reached" in held[0]["explanation"]


def test_a_message_withdrawn_by_the_goal_reads_withdrawn_with_its_reason(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    _abandon_loan(bank, cookie)
    bank.at_step(cid, LOAN, "wait_push")

    bank.post(cookie, "application.completed", product_class="consumer_loan", application_id="A-1")

    ended = bank.ended(cid, LOAN)
    assert (ended["outcome"], ended["goal_reached"]) == ("goal_reached", True)
    push = _messages(ended, "webpush")[0]
    assert (push["status"], push["status_reason"]) == ("withdrawn", "goal reached: application.completed")
    assert push["status_at"] is not None


# ---------------------------------------------------------------- 5. no promotion of what was just taken


def test_no_tariff_promotion_of_a_product_class_just_opened(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    bank.post(cookie, "product.opened", product_class="deposit", contract_number="DEP-9")
    bank.post(cookie, "tariff_page.visited", product_class="deposit", page="/deposits")

    decided = bank.until(
        lambda: [d for d in bank.decisions(cid) if d["scenario_id"] == "deposit-tariff-interest"],
        "a decision",
    )
    assert decided[0]["action"] == "suppress"
    blocking = [r for r in decided[0]["rules"] if r["effect"] == "suppress"]
    assert [r["rule"] for r in blocking] == ["recently_acquired"]
    assert "90 days" in blocking[0]["detail"]
    assert not [
        i for i in bank.conversations(cid)["instances"] if i["scenario_id"] == "deposit-tariff-interest"
    ]


# ---------------------------------------------------------------- 6. STOP means stop


def test_an_sms_unsubscribe_withdraws_consent_and_no_marketing_sms_follows(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    bank.post(cookie, "deposit.maturing", contract_number="DEP-1", maturity_date="2026-12-30")
    email = _messages(bank.at_step(cid, RENEWAL, "wait_email"), "email")[0]
    bank.react(cookie, email, "opened")
    sms = _messages(bank.at_step(cid, RENEWAL, "wait_sms"), "sms")[0]

    bank.react(cookie, sms, "unsubscribed")
    # the ledger changed in the request's own transaction: no waiting for the worker
    assert bank.granted(cid, "sms") is False
    withdrawal = bank.consents(cid)["ledger"][-1]
    assert (withdrawal["channel"], withdrawal["purpose"], withdrawal["granted"]) == (
        "sms",
        "marketing",
        False,
    )
    assert withdrawal["source"] == "message.reaction"
    assert bank.conversation(cid, RENEWAL)["messages"][-1]["status"] == "withdrawn"  # the queued SMS

    bank.post(cookie, "payment.overdue", contract_number="LN-1", days_overdue=3, amount_due=100)
    bank.settled(1.0)
    after = [
        m
        for i in bank.conversations(cid)["instances"]
        for m in i["messages"]
        if m["channel"] == "sms" and m["purpose"] != "service" and m["status"] == "queued"
    ]
    assert after == [], "a marketing SMS was queued after STOP"


def test_a_campaign_opt_out_withdraws_marketing_consent(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    bank.post(cookie, "crm.campaign.outcome", "email", campaign_id="C-9", outcome="opted_out")

    assert bank.granted(cid, "email") is False
    assert bank.granted(cid, "sms") is True
    assert bank.consents(cid)["ledger"][-1]["source"] == "crm.campaign.outcome"


# ---------------------------------------------------------------- 4. scarce slots go by priority

OVERDUE = "payment-overdue-reminder"


def test_a_collections_contact_takes_the_last_slot_from_a_queued_commercial_push(bank: Bank) -> None:
    cid, cookie = bank.new_client()
    # at once: a commercial push (1st contact today), a retention e-mail (2nd), a collections SMS (3rd,
    # over the daily cap of 2) - the commercial push, still queued, gives its slot up
    bank.post_batch(
        [
            bank.event(
                cookie,
                "application.abandoned",
                product_class="consumer_loan",
                application_id="A-1",
                last_step="documents",
            ),
            bank.event(cookie, "deposit.maturing", contract_number="DEP-1", maturity_date="2026-12-30"),
            bank.event(cookie, "payment.overdue", contract_number="LN-1", days_overdue=3, amount_due=100),
        ]
    )

    overdue = bank.at_step(cid, OVERDUE, "wait_sms")
    assert [m["status"] for m in _messages(overdue, "sms")] == ["queued"]
    assert _messages(bank.conversation(cid, RENEWAL), "email")[0]["status"] == "queued"
    loan = bank.until(
        lambda: [s for s in bank.conversation(cid, LOAN)["steps"] if s["action"] == "hold"], "hold"
    )
    push = _messages(bank.conversation(cid, LOAN), "webpush")[0]
    assert push["status"] == "withdrawn"
    assert push["status_reason"].startswith(f"its slot went to {OVERDUE} (collections)")
    assert loan[0]["rules"][0]["rule"] == "priority"
    # the loan conversation waits for a slot at its push step, held by the cap with its reason
    held = bank.until(
        lambda: [
            s
            for s in bank.conversation(cid, LOAN)["steps"]
            if s["action"] == "hold" and s["rules"] and any(r["rule"] == "frequency_cap" for r in s["rules"])
        ],
        "the cap's hold",
    )
    now = bank.conversation(cid, LOAN)
    assert (now["status"], now["step"], now["due_at"]) == ("active", "push", held[0]["due_at"])
    queued = [
        m for i in bank.conversations(cid)["instances"] for m in i["messages"] if m["status"] == "queued"
    ]
    assert sorted(m["channel"] for m in queued) == ["email", "sms"]  # two contacts: the cap holds
