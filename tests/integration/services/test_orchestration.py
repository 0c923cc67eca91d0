"""Integration tests of the scenario orchestration: decide, route, timers, goals, consent, caps, crash safety.

Every test drives the whole loop (ingest -> consume -> fire_timers) with an explicit clock and asserts on
the stored rows (decisions, scenario_instances, outbox, consumer offset), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from omnicrm.bootstrap import Container
from omnicrm.services.contracts import ConsentIn, CustomerIn
from omnicrm.services.conversations import decider, explaining
from omnicrm.services.conversations.decider import CONSUMER, consume, drain, fire_timers
from omnicrm.services.conversations.report import Report
from omnicrm.services.intake import ingest
from omnicrm.services.profiles import customers
from omnicrm.store import conversations
from omnicrm.store import offsets as queue_offsets
from omnicrm.store.tables import decisions, instances, offsets, outbox

LOAN = "loan-application-reminder"
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # 12:00 in Kyiv (UTC+2 in November)
MARKETING_CHANNELS = ("webpush", "email", "callcentre")
_SEQ = itertools.count(1)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Loop:
    """Drives the full decide-and-route loop against one backend with explicit clock values."""

    def __init__(self, container: Container) -> None:
        self.container = container

    # --- set-up ---------------------------------------------------------------------------------
    def new_client(
        self,
        *,
        channels: Iterable[str] = MARKETING_CHANNELS,
        now: datetime = T0,
        **fields: Any,
    ) -> tuple[str, str]:
        """A client with marketing consent on `channels`; returns (customer_id, cookie_id)."""
        cookie = f"ck-{next(_SEQ)}"
        body: dict[str, Any] = {
            "status": "client",
            "first_name": "Ivan",
            "identifiers": [{"kind": "cookie_id", "value": cookie}],
            "consents": [
                {
                    "channel": c,
                    "purpose": "marketing",
                    "granted": True,
                    "effective_at": "2026-01-01T00:00:00Z",
                }
                for c in channels
            ],
            **fields,
        }
        with self.container.uow() as uow:
            cid, _ = customers.upsert(uow.conn, CustomerIn.model_validate(body), actor="test", now=now)
            uow.commit()
        return cid, cookie

    def withdraw(self, cid: str, channels: Iterable[str], at: datetime) -> None:
        with self.container.uow() as uow:
            for channel in channels:
                consent = ConsentIn.model_validate(
                    {"channel": channel, "purpose": "marketing", "granted": False, "effective_at": iso(at)}
                )
                customers.record_consent(uow.conn, cid, consent, actor="test", now=at)
            uow.commit()

    def emit(
        self,
        cookie: str,
        type_: str,
        at: datetime,
        attributes: dict[str, Any] | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        """Ingest one event for the client behind `cookie`; returns its event_id."""
        event_id = event_id or f"ev-{next(_SEQ)}"
        self.emit_many([(cookie, type_, at, attributes, event_id)])
        return event_id

    def emit_many(self, items: list[tuple[str, str, datetime, dict[str, Any] | None, str]]) -> None:
        raw = [
            {
                "event_id": event_id,
                "type": type_,
                "occurred_at": iso(at),
                "source": "web",
                "identifiers": {"cookie_id": cookie},
                "attributes": attributes or {},
            }
            for cookie, type_, at, attributes, event_id in items
        ]
        latest = max(at for _, _, at, _, _ in items)
        with self.container.uow() as uow:
            prepared = ingest.prepare(
                raw, self.container.catalogue, ingest.EVENT_KINDS | ingest.INTERACTION_KINDS
            )
            ingest.ingest(uow.conn, prepared, actor="test", now=latest)
            uow.commit()

    def sent_earlier(self, cid: str, times: list[datetime]) -> None:
        """Commercial SMS already sent to this client at `times` (they count towards the caps)."""
        with self.container.uow() as uow:
            uow.conn.execute(
                insert(outbox),
                [
                    {
                        "idempotency_key": f"earlier-{cid}-{n}",
                        "customer_id": cid,
                        "instance_id": None,
                        "kind": "message",
                        "channel": "sms",
                        "template": "x",
                        "purpose": "commercial",
                        "payload": {},
                        "status": "sent",
                        "available_at": at,
                        "created_at": at,
                    }
                    for n, at in enumerate(times)
                ],
            )
            uow.commit()

    def abandon(self, cookie: str, at: datetime, *, product_class: str = "consumer_loan") -> str:
        attrs = {"product_class": product_class, "application_id": "A-1", "last_step": "documents"}
        return self.emit(cookie, "application.abandoned", at, attrs)

    # --- the loop -------------------------------------------------------------------------------
    def consume(self, now: datetime, *, limit: int = 1000) -> Report:
        return consume(self.container.uow, self.container.library, now=now, limit=limit)

    def timers(self, now: datetime) -> Report:
        return fire_timers(self.container.uow, self.container.library, now=now)

    # --- reading stored rows --------------------------------------------------------------------
    def instances(self, cid: str, scenario_id: str | None = LOAN) -> list[dict[str, Any]]:
        with self.container.reader() as conn:
            rows = explaining.conversations_view(conn, cid)["instances"]
        return [r for r in rows if scenario_id is None or r["scenario_id"] == scenario_id]

    def outbox(self, cid: str) -> list[dict[str, Any]]:
        with self.container.reader() as conn:
            rows: list[dict[str, Any]] = explaining.conversations_view(conn, cid)["outbox"]
        return rows

    def decisions(self, cid: str, scenario_id: str | None = LOAN) -> list[dict[str, Any]]:
        """Decisions oldest first, each with its explanation."""
        with self.container.reader() as conn:
            items = explaining.decisions(conn, cid, limit=500)["items"]
        return [d for d in reversed(items) if scenario_id is None or d["scenario_id"] == scenario_id]

    def totals(self) -> dict[str, int]:
        with self.container.reader() as conn:
            return {
                t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (decisions, instances, outbox)
            }

    def offset(self) -> int:
        with self.container.reader() as conn:
            value = conn.execute(
                select(offsets.c.last_event_pk).where(offsets.c.consumer == CONSUMER)
            ).scalar_one_or_none()
        return int(value or 0)


@pytest.fixture
def loop(container: Container) -> Loop:
    return Loop(container)


H = timedelta(hours=1)
RULE_NAMES = [
    "audience",
    "do_not_contact",
    "fraud_case",
    "open_complaint",
    "channel",
    "cooling_off",
    "recently_acquired",
    "goal",
    "reentry",
    "vulnerable",
    "frequency_cap",
    "quiet_hours",
]


def _only(rows: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(rows) == 1, rows
    return rows[0]


def _started(loop: Loop) -> tuple[str, str]:
    """A client whose loan reminder started at T0 (push queued, waiting 24 h)."""
    cid, cookie = loop.new_client()
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))
    loop.consume(T0)
    return cid, cookie


def _assert_one_active_at_most(loop: Loop, cid: str) -> None:
    assert sum(1 for i in loop.instances(cid) if i["status"] == "active") <= 1


# ------------------------------------------------------------------------------------ happy path


def test_abandoned_loan_application_runs_push_email_call(loop: Loop) -> None:
    cid, cookie = loop.new_client()
    event_id = loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))

    report = loop.consume(T0)

    assert report.events == 1
    decision = _only(loop.decisions(cid))
    assert decision["action"] == "contact"
    assert decision["channel"] == "webpush"
    assert decision["event_id"] == event_id
    assert [r["rule"] for r in decision["rules"]] == RULE_NAMES
    assert all(r["effect"] == "pass" for r in decision["rules"])
    instance = _only(loop.instances(cid))
    assert decision["instance_id"] == instance["id"]
    assert (instance["status"], instance["step"], instance["due_at"]) == ("active", "wait_push", T0 + 24 * H)
    assert instance["trigger_event_id"] == event_id
    push = _only(loop.outbox(cid))
    assert (push["kind"], push["channel"], push["template"], push["status"]) == (
        "message",
        "webpush",
        "loan_reminder_push",
        "queued",
    )
    assert push["instance_id"] == instance["id"]
    assert push["idempotency_key"]
    assert push["payload"]["message_id"] == push["idempotency_key"]

    # Not yet due: nothing moves.
    assert loop.timers(T0 + 23 * H).messages == 0
    assert len(loop.outbox(cid)) == 1

    second = T0 + 25 * H
    report = loop.timers(second)
    assert report.messages == 1
    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["step"], instance["due_at"]) == (
        "active",
        "wait_email",
        second + 48 * H,
    )
    outbox_rows = loop.outbox(cid)
    assert [(o["kind"], o["channel"], o["template"]) for o in outbox_rows] == [
        ("message", "webpush", "loan_reminder_push"),
        ("message", "email", "loan_reminder_email"),
    ]

    report = loop.timers(second + 49 * H)
    assert report.tasks == 1
    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["step"], instance["outcome"]) == ("completed", "done", "finished")
    assert instance["due_at"] is None
    task = loop.outbox(cid)[-1]
    assert (task["kind"], task["channel"], task["payload"]["queue"]) == ("task", "callcentre", "loans")
    assert len(loop.outbox(cid)) == 3
    assert len({o["idempotency_key"] for o in loop.outbox(cid)}) == 3


# ------------------------------------------------------------------------------------ goal


def test_goal_ends_the_conversation_and_cancels_pending_messages(loop: Loop) -> None:
    cid, cookie = _started(loop)
    attrs = {"product_class": "consumer_loan", "application_id": "A-1"}
    loop.emit(cookie, "application.completed", T0 + 2 * H, attrs)

    report = loop.consume(T0 + 2 * H)

    assert report.completed == 1
    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["outcome"], instance["goal_reached"]) == (
        "completed",
        "goal_reached",
        True,
    )
    assert instance["ended_at"] == T0 + 2 * H
    assert [o["status"] for o in loop.outbox(cid)] == ["withdrawn"]

    before = loop.totals()
    assert loop.timers(T0 + 25 * H).messages == 0
    assert loop.totals() == before
    assert [o["status"] for o in loop.outbox(cid)] == ["withdrawn"]


def test_goal_of_another_product_does_not_end_the_loan_conversation(loop: Loop) -> None:
    cid, cookie = _started(loop)
    loop.emit(cookie, "application.completed", T0 + H, {"product_class": "card", "application_id": "C-1"})

    loop.consume(T0 + H)

    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["step"]) == ("active", "wait_push")
    assert [o["status"] for o in loop.outbox(cid)] == ["queued"]


# ------------------------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("batches", [1, 2])
def test_parallel_reactions_on_two_channels_never_fork_the_conversation(loop: Loop, batches: int) -> None:
    cid, cookie = _started(loop)
    loop.timers(T0 + 25 * H)
    push, email = loop.outbox(cid)
    at = T0 + 26 * H
    loop.emit_many(
        [
            (
                cookie,
                "message.reaction",
                at,
                {"message_id": push["idempotency_key"], "reaction": "opened"},
                "r-p",
            ),
            (
                cookie,
                "message.reaction",
                at,
                {"message_id": email["idempotency_key"], "reaction": "opened"},
                "r-e",
            ),
        ]
    )

    for _ in range(batches):
        loop.consume(at, limit=2 // batches)
        _assert_one_active_at_most(loop, cid)

    assert loop.consume(at).events == 0
    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["step"], instance["outcome"]) == ("completed", "done", "finished")
    assert instance["last_reaction"] == "opened"
    outbox_rows = loop.outbox(cid)
    assert [o["channel"] for o in outbox_rows] == ["webpush", "email"]  # no call task, nothing twice
    assert len({o["idempotency_key"] for o in outbox_rows}) == len(outbox_rows)
    # A later timer finds nothing to do for it.
    assert loop.timers(T0 + 200 * H).tasks == 0
    assert len(loop.outbox(cid)) == 2


def test_late_operator_closure_after_completion_changes_nothing(loop: Loop) -> None:
    cid, cookie = _started(loop)
    loop.timers(T0 + 25 * H)
    loop.timers(T0 + 75 * H)
    instance = _only(loop.instances(cid))
    assert instance["status"] == "completed"
    before_instances, before_outbox = loop.instances(cid), loop.outbox(cid)
    before_decisions = loop.decisions(cid)

    late = T0 + 80 * H
    loop.emit(cookie, "crm.call.completed", late, {"direction": "outbound", "disposition": "resolved"})
    report = loop.consume(late)

    assert report.events == 1
    assert loop.instances(cid) == before_instances
    assert loop.outbox(cid) == before_outbox
    assert loop.decisions(cid) == before_decisions
    assert not [i for i in loop.instances(cid, None) if i["status"] == "active"]


def test_repeated_activity_after_the_goal_starts_no_second_conversation(loop: Loop) -> None:
    cid, cookie = _started(loop)
    loop.emit(
        cookie, "application.completed", T0 + H, {"product_class": "consumer_loan", "application_id": "A-1"}
    )
    loop.consume(T0 + H)
    outbox_before = loop.outbox(cid)

    again = loop.abandon(cookie, T0 + 3 * H)
    loop.consume(T0 + 3 * H)

    first, second = loop.decisions(cid)
    assert first["action"] == "contact"
    assert (second["action"], second["event_id"], second["instance_id"]) == ("suppress", again, None)
    blocking = [r for r in second["rules"] if r["effect"] == "suppress"]
    assert blocking
    assert {r["rule"] for r in blocking} <= {"reentry", "goal"}
    assert "do not contact" in second["explanation"]
    assert any(f"{r['rule']}: blocks" in second["explanation"] for r in blocking)
    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["goal_reached"]) == ("completed", True)
    assert loop.outbox(cid) == outbox_before


@pytest.mark.parametrize("same_batch", [False, True])
def test_same_trigger_twice_while_running_joins(loop: Loop, same_batch: bool) -> None:
    cid, cookie = loop.new_client()
    first = loop.abandon(cookie, T0 - H)
    if not same_batch:
        loop.consume(T0)
    second = loop.abandon(cookie, T0 + 5 * timedelta(minutes=1) if not same_batch else T0 - H / 2)
    loop.consume(T0 + 10 * timedelta(minutes=1))

    d1, d2 = loop.decisions(cid)
    assert (d1["event_id"], d1["action"]) == (first, "contact")
    assert (d2["event_id"], d2["action"]) == (second, "join")
    assert {r["rule"]: r["effect"] for r in d2["rules"]}["reentry"] == "join"
    instance = _only(loop.instances(cid))
    assert instance["status"] == "active"
    assert d1["instance_id"] == d2["instance_id"] == instance["id"]
    assert [o["channel"] for o in loop.outbox(cid)] == ["webpush"]


# ------------------------------------------------------------------------------------ consent


def test_withdrawn_consent_is_honoured_by_the_next_timer(loop: Loop) -> None:
    cid, _ = _started(loop)
    withdrawn_at = T0 + H
    loop.withdraw(cid, ["webpush", "email"], withdrawn_at)

    report = loop.timers(T0 + 25 * H)

    # the e-mail is skipped, and with no e-mail to react to the call-centre task follows at once
    assert (report.messages, report.skipped, report.tasks) == (0, 1, 1)
    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["step"]) == ("completed", "done")
    late = [
        o
        for o in loop.outbox(cid)
        if o["channel"] in ("webpush", "email") and o["created_at"] >= withdrawn_at
    ]
    assert late == []
    assert [(o["kind"], o["channel"]) for o in loop.outbox(cid)] == [
        ("message", "webpush"),
        ("task", "callcentre"),  # call-centre consent was kept
    ]


# ------------------------------------------------------------------------------------ quiet hours


def test_trigger_in_quiet_hours_is_delayed_until_the_morning(loop: Loop) -> None:
    cid, cookie = loop.new_client()
    night = datetime(2026, 11, 20, 20, 30, tzinfo=UTC)  # 22:30 in Kyiv
    morning = datetime(2026, 11, 21, 7, 0, tzinfo=UTC)  # 09:00 in Kyiv
    loop.abandon(cookie, night - 5 * timedelta(minutes=1))

    loop.consume(night)

    decision = _only(loop.decisions(cid))
    assert (decision["action"], decision["due_at"]) == ("delay", morning)
    assert {r["rule"]: r["effect"] for r in decision["rules"]}["quiet_hours"] == "delay"
    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["step"], instance["due_at"]) == ("active", "push", morning)
    assert loop.outbox(cid) == []

    loop.timers(morning - timedelta(minutes=1))
    assert loop.outbox(cid) == []

    report = loop.timers(morning)
    assert report.messages == 1
    push = _only(loop.outbox(cid))
    assert (push["channel"], push["created_at"]) == ("webpush", morning)
    instance = _only(loop.instances(cid))
    assert (instance["step"], instance["due_at"]) == ("wait_push", morning + 24 * H)


# ------------------------------------------------------------------------------------ vulnerable


def test_vulnerable_client_is_escalated_to_a_person(loop: Loop) -> None:
    cid, cookie = loop.new_client(constraints={"vulnerable": True})
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))

    loop.consume(T0)

    decision = _only(loop.decisions(cid))
    assert (decision["action"], decision["channel"]) == ("escalate", "callcentre")
    assert {r["rule"]: r["effect"] for r in decision["rules"]}["vulnerable"] == "human"
    task = _only(loop.outbox(cid))
    assert (task["kind"], task["channel"]) == ("task", "callcentre")
    assert all(o["kind"] != "message" for o in loop.outbox(cid))
    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["outcome"]) == ("completed", "handed_to_person")
    loop.timers(T0 + 100 * H)
    assert all(o["kind"] != "message" for o in loop.outbox(cid))


# ------------------------------------------------------------------------------------ caps


def test_frequency_cap_delays_the_third_commercial_contact(loop: Loop) -> None:
    cid, cookie = loop.new_client()
    loop.sent_earlier(cid, [T0 - 3 * H, T0 - 2 * H])
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))

    loop.consume(T0)

    free_at = T0 - 3 * H + 24 * H  # the older contact leaves the 24 h window (09:00 Kyiv)
    decision = _only(loop.decisions(cid))
    assert (decision["action"], decision["due_at"]) == ("delay", free_at)
    assert {r["rule"]: r["effect"] for r in decision["rules"]}["frequency_cap"] == "delay"
    assert len(loop.outbox(cid)) == 2  # nothing new queued
    instance = _only(loop.instances(cid))
    assert (instance["step"], instance["due_at"]) == ("push", free_at)

    loop.timers(free_at)
    assert [o["channel"] for o in loop.outbox(cid)] == ["sms", "sms", "webpush"]


@pytest.mark.parametrize("same_batch", [True, False])
def test_a_message_withdrawn_by_the_goal_does_not_count_towards_the_cap(loop: Loop, same_batch: bool) -> None:
    """The loan push is cancelled when the loan application completes: it was never sent, so the
    card reminder that follows is the second contact of the day, not a third. The outcome must not
    depend on whether the events are decided in one batch or in several."""
    cid, cookie = loop.new_client()
    loop.sent_earlier(cid, [T0 - 3 * H])
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))
    if not same_batch:
        loop.consume(T0)
    loop.emit(
        cookie, "application.completed", T0, {"product_class": "consumer_loan", "application_id": "A-1"}
    )
    if not same_batch:
        loop.consume(T0)
    loop.abandon(cookie, T0, product_class="card")

    loop.consume(T0)

    assert [o["status"] for o in loop.outbox(cid) if o["channel"] == "webpush"] == ["withdrawn", "queued"]
    card = _only(loop.decisions(cid, "card-application-reminder"))
    assert card["action"] == "contact", card["rules"]


# ------------------------------------------------------------------------------------ batch size
# A catch-up decides the same whatever its batch size or number of processes: the facts of each
# event are the history as the queue had it there, whether read from the store or kept in memory.


@pytest.mark.parametrize("limit", [1, 1000])
def test_an_event_queued_later_is_not_seen_early(loop: Loop, limit: int) -> None:
    cid, cookie = loop.new_client()
    loop.abandon(cookie, T0 - H)
    loop.emit(
        cookie,
        "application.completed",
        T0 - H / 2,
        {"product_class": "consumer_loan", "application_id": "A-1"},
    )

    loop.consume(T0, limit=limit)
    loop.consume(T0)

    decision = _only(loop.decisions(cid))
    assert decision["action"] == "contact", decision["rules"]
    assert _only(loop.instances(cid))["outcome"] == "goal_reached"


@pytest.mark.parametrize("same_batch", [True, False])
def test_a_decline_counts_from_when_it_is_handled(loop: Loop, same_batch: bool) -> None:
    cid, cookie = loop.new_client()
    loop.abandon(cookie, T0 - H, product_class="card")
    if not same_batch:
        loop.consume(T0)
    loop.emit(cookie, "crm.offer.declined", T0 - H / 2, {"product_class": "card"})
    loop.abandon(cookie, T0 - H / 4, product_class="card")
    loop.consume(T0)

    before, after = loop.decisions(cid, "card-application-reminder")
    assert before["action"] == "contact", before["rules"]
    assert after["action"] == "suppress"
    assert {r["rule"]: r["effect"] for r in after["rules"]}["cooling_off"] == "suppress"


@pytest.mark.parametrize("same_batch", [True, False])
def test_a_goal_older_than_the_interest_window_is_forgotten_in_any_batch(
    loop: Loop, same_batch: bool
) -> None:
    """Events older than the policy's interest window are not part of the facts read from the store;
    kept in memory within a batch they must not count either."""
    cid, cookie = loop.new_client()
    days = timedelta(days=1)
    loop.emit(
        cookie,
        "application.completed",
        T0 - 16 * days,
        {"product_class": "consumer_loan", "application_id": "A-1"},
    )
    if not same_batch:
        loop.consume(T0)
    loop.abandon(cookie, T0 - 20 * days)  # arrives late, from before the completion
    loop.consume(T0)

    decision = _only(loop.decisions(cid))
    assert {r["rule"]: r["effect"] for r in decision["rules"]}["goal"] == "pass"


# ------------------------------------------------------------------------------------ crash safety


@pytest.mark.parametrize("where", ["write_offset", "write_batch"])
def test_failed_consume_leaves_nothing_and_the_retry_runs_once(
    loop: Loop, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    cid, cookie = loop.new_client()
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))
    before, offset = loop.totals(), loop.offset()

    module: Any = queue_offsets if where == "write_offset" else conversations
    real: Callable[..., Any] = getattr(module, where)

    def crash(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)  # the work is done in the transaction, then the process dies
        raise RuntimeError("crash")

    monkeypatch.setattr(module, where, crash)
    with pytest.raises(RuntimeError, match="crash"):
        loop.consume(T0)
    monkeypatch.undo()

    assert loop.totals() == before
    assert loop.offset() == offset

    assert loop.consume(T0).events == 1
    assert loop.consume(T0).events == 0
    assert len(loop.decisions(cid)) == 1
    assert len(loop.instances(cid)) == 1
    assert len(loop.outbox(cid)) == 1


# ------------------------------------------- deciding on a snapshot, writing in a short transaction


def _meanwhile(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> list[int]:
    """Run `action` (in its own transactions) once, after the next batch was decided and before it is
    written: what a second worker, a timer or a reload would do at that moment. Returns a list that
    counts the batches decided."""
    real = decider.plan_events
    planned: list[int] = []

    def plan(*args: Any, **kwargs: Any) -> Any:
        work = real(*args, **kwargs)
        planned.append(len(work.decisions))
        if len(planned) == 1:
            action()
        return work

    monkeypatch.setattr(decider, "plan_events", plan)
    return planned


def test_the_engine_decides_without_holding_the_write_lock(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch is being decided, another writer commits (on SQLite it would wait for the
    lock if the decider held it: here it would time out, the test would hang)."""
    cid, cookie = loop.new_client()
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))
    other, other_cookie = loop.new_client()
    planned = _meanwhile(monkeypatch, lambda: loop.abandon(other_cookie, T0 - timedelta(minutes=1)))

    assert loop.consume(T0).events == 1
    assert planned == [1]  # decided once: the other writer touched no conversation
    assert len(loop.decisions(cid)) == 1
    assert loop.decisions(other) == []  # its event is next in the queue
    assert loop.consume(T0).events == 1
    assert len(loop.decisions(other)) == 1


def test_a_batch_another_worker_took_meanwhile_is_not_written_twice(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, cookie = loop.new_client()
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))
    before = loop.totals()
    planned = _meanwhile(monkeypatch, lambda: consume(loop.container.uow, loop.container.library, now=T0))

    assert loop.consume(T0).events == 0  # the other worker handled the event first
    assert planned == [1, 1]  # the first plan was dropped when the offset had moved
    assert len(loop.decisions(cid)) == 1
    assert len(loop.instances(cid)) == 1
    assert len(loop.outbox(cid)) == 1
    assert loop.totals()["decisions"] == before["decisions"] + 1


def test_a_conversation_moved_meanwhile_makes_the_batch_decided_again(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timer moves the client's conversation (the push wait times out, the e-mail goes) while a
    reaction to the push is being decided: the stale plan would resume a wait that is over."""
    cid, cookie = loop.new_client()
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))
    loop.consume(T0)
    push = _only(loop.outbox(cid))
    loop.emit(
        cookie, "message.reaction", T0 + 2 * H, {"message_id": push["idempotency_key"], "reaction": "clicked"}
    )
    planned = _meanwhile(monkeypatch, lambda: loop.timers(T0 + 25 * H))

    assert loop.consume(T0 + 25 * H).events == 1
    assert len(planned) == 2  # decided again under the lock, on the moved conversation
    assert [o["channel"] for o in loop.outbox(cid)] == ["webpush", "email"]  # nothing sent twice
    assert len(loop.instances(cid)) == 1


def test_a_queue_split_meanwhile_is_left_to_its_partitions(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parallel catch-up takes the queue while the whole queue's worker decides: the worker must not
    go on past the catch-up's bound before the partitions are done (a newer event first)."""
    _, cookie = loop.new_client()
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))
    later, later_cookie = loop.new_client()

    def split_then_more() -> None:
        assert decider.split(loop.container.uow, 2) is not None
        loop.abandon(later_cookie, T0 - timedelta(minutes=1))  # after the bound

    _meanwhile(monkeypatch, split_then_more)
    assert loop.consume(T0).events == 0
    assert loop.decisions(later) == []
    monkeypatch.undo()

    drained = drain(loop.container.uow, loop.container.library, now=T0)
    assert drained.events == 2  # the partitions' event, then the newer one
    assert len(loop.decisions(later)) == 1


# ------------------------------------------------------------------------------------ timer backlog


def _waiting(loop: Loop, n: int) -> list[str]:
    """n clients whose loan reminder waits for the push reaction until T0 + 24 h."""
    clients = [loop.new_client() for _ in range(n)]
    for _, cookie in clients:
        loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))
    loop.consume(T0)
    return [cid for cid, _ in clients]


def _steps(loop: Loop, cids: list[str]) -> list[str]:
    return [_only(loop.instances(cid))["step"] for cid in cids]


def test_a_backlog_of_timers_is_worked_off_in_bites(loop: Loop) -> None:
    cids = _waiting(loop, 5)
    later = T0 + 25 * H

    bite = drain(loop.container.uow, loop.container.library, now=later, timers=2, timer_rounds=1)
    assert bite.timers == 2  # the live worker's way: one bite, then new events get their turn
    assert sorted(_steps(loop, cids)).count("wait_push") == 3

    rest = drain(loop.container.uow, loop.container.library, now=later, timers=2)
    assert rest.timers == 3  # a catch-up goes on until no timer is due
    assert "wait_push" not in _steps(loop, cids)
    assert [len(loop.outbox(cid)) for cid in cids] == [2] * 5  # the e-mail went, once each


def test_a_conversation_that_cannot_move_does_not_block_the_timers(loop: Loop) -> None:
    cids = _waiting(loop, 3)
    with loop.container.uow() as uow:  # its version is unknown to the library (as if never published)
        uow.conn.execute(
            instances.update().where(instances.c.customer_id == cids[0]).values(scenario_version=999)
        )
        uow.commit()

    report = drain(loop.container.uow, loop.container.library, now=T0 + 25 * H, timers=1)

    stuck = _only(loop.instances(cids[0]))
    assert (stuck["status"], stuck["step"], stuck["due_at"]) == ("active", "wait_push", None)
    assert _steps(loop, cids[1:]) == ["wait_email", "wait_email"]
    assert report.timers == 3


# ------------------------------------------------------------------------------------ the queue


def test_consumer_reads_events_in_order_exactly_once(loop: Loop) -> None:
    emitted: list[str] = []
    for n in range(5):
        _, cookie = loop.new_client()
        emitted.append(loop.abandon(cookie, T0 - (10 - n) * timedelta(minutes=1)))

    seen: list[int] = []
    offsets_seen = [loop.offset()]
    for _ in range(3):
        seen.append(loop.consume(T0, limit=2).events)
        offsets_seen.append(loop.offset())
    assert seen == [2, 2, 1]
    assert offsets_seen == sorted(set(offsets_seen))  # strictly increasing
    assert loop.consume(T0, limit=2).events == 0

    with loop.container.reader() as conn:
        rows = conn.execute(
            select(decisions.c.event_id).where(decisions.c.scenario_id == LOAN).order_by(decisions.c.id)
        ).all()
    assert [r.event_id for r in rows] == emitted


def test_drain_twice_adds_nothing(loop: Loop) -> None:
    for _ in range(2):
        _, cookie = loop.new_client()
        loop.abandon(cookie, T0)
    first = drain(loop.container.uow, loop.container.library)
    after = loop.totals()

    again = drain(loop.container.uow, loop.container.library)

    assert first.events == 2
    assert after["decisions"] >= 2
    assert after["scenario_instances"] == 2
    assert again.events == 0
    assert loop.totals() == after


# ------------------------------------------------------------------------------------ known bugs


def test_a_delivery_report_does_not_end_the_wait(loop: Loop) -> None:
    reaction = "delivered"
    cid, cookie = _started(loop)
    push = _only(loop.outbox(cid))
    at = T0 + 5 * timedelta(minutes=1)
    loop.emit(cookie, "message.reaction", at, {"message_id": push["idempotency_key"], "reaction": reaction})

    loop.consume(at)

    instance = _only(loop.instances(cid))
    assert (instance["status"], instance["step"], instance["due_at"]) == ("active", "wait_push", T0 + 24 * H)
    assert [o["channel"] for o in loop.outbox(cid)] == ["webpush"]


def test_a_consent_dated_in_the_future_does_not_permit_contact_now(loop: Loop) -> None:
    cid, cookie = loop.new_client(channels=())
    with loop.container.uow() as uow:
        for channel in MARKETING_CHANNELS:
            consent = ConsentIn.model_validate(
                {
                    "channel": channel,
                    "purpose": "marketing",
                    "granted": True,
                    "effective_at": iso(T0 + 240 * H),
                }
            )
            customers.record_consent(uow.conn, cid, consent, actor="test", now=T0)
        uow.commit()
    loop.abandon(cookie, T0 - 5 * timedelta(minutes=1))

    loop.consume(T0)

    decision = _only(loop.decisions(cid))
    assert decision["action"] == "suppress"
    assert loop.outbox(cid) == []
