"""Property-based test of the whole decision loop on a real SQLite database (Hypothesis state machine).

Random sequences of trigger, goal and reaction events, clock jumps with timers, consent withdrawals and
grants and deliveries are played against ingest -> consume -> fire_timers; after every step the database
must show: at most one active instance per (customer, scenario); nothing scheduled for a conversation
after its goal ended it; no marketing contact on a channel whose marketing consent was withdrawn; and no
more non-service contacts than the frequency caps of scenarios/policy.yaml allow.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, text, update

from omnicrm.bootstrap import Container, bootstrap
from omnicrm.domain.policy import Cap
from omnicrm.services.contracts import ConsentIn, CustomerIn
from omnicrm.services.conversations.decider import consume, fire_timers
from omnicrm.services.intake import ingest
from omnicrm.services.profiles import customers
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings
from omnicrm.store.db import make_engine
from omnicrm.store.tables import consents, instances, outbox

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # 10:00 in Kyiv: outside quiet hours
CHANNELS = ("webpush", "email", "inapp", "callcentre", "sms")
CUSTOMERS = 2
ACTOR = "property-test"
DAY, WEEK = timedelta(days=1), timedelta(days=7)
Json = dict[str, Any]


def _settings(url: str) -> Settings:
    return Settings(
        database_url=url,
        catalogue_file=SHIPPED_CATALOGUE,
        scenarios_dir=SHIPPED_SCENARIOS,
        env="test",
    )


# Trigger and goal events of real templates. Commercial: loan/card application reminders (goal
# application.completed), deposit tariff interest and loan calculator follow-up (goal
# application.started); one commercial conversation runs at a time, so collections (payment overdue),
# retention (deposit renewal, goal product.opened) and service (failed sign-in) triggers are mixed in
# to put the frequency caps under pressure.
def _application(kind: str, product: str, **extra: Any) -> Json:
    return {"type": f"application.{kind}", "attributes": {"product_class": product, **extra}}


EVENT_KINDS: dict[str, Json] = {
    "loan_abandoned": _application("abandoned", "consumer_loan", last_step="docs"),
    "card_abandoned": _application("abandoned", "card", last_step="docs"),
    "loan_completed": _application("completed", "consumer_loan"),
    "card_completed": _application("completed", "card"),
    "loan_started": _application("started", "consumer_loan"),
    "deposit_started": _application("started", "deposit"),
    "deposit_tariff_visited": {
        "type": "tariff_page.visited",
        "attributes": {"product_class": "deposit", "page": "/deposits"},
    },
    "loan_calculator_used": {
        "type": "loan.calculator.used",
        "attributes": {"amount": 50000, "term_months": 24},
    },
    "payment_overdue_early": {
        "type": "payment.overdue",
        "attributes": {"contract_number": "L-1", "days_overdue": 3},
    },
    "payment_overdue_late": {
        "type": "payment.overdue",
        "attributes": {"contract_number": "L-1", "days_overdue": 12},
    },
    "deposit_maturing": {
        "type": "deposit.maturing",
        "attributes": {"contract_number": "D-1", "maturity_date": "2026-12-31"},
    },
    "deposit_opened": {
        "type": "product.opened",
        "attributes": {"product_class": "deposit", "contract_number": "D-2"},
    },
    "auth_failed": {"type": "auth.failed", "attributes": {"method": "password"}},
}
TRIGGERS = (
    "loan_abandoned",
    "card_abandoned",
    "deposit_tariff_visited",
    "loan_calculator_used",
    "payment_overdue_early",
    "payment_overdue_late",
    "deposit_maturing",
    "auth_failed",
)
GOALS = ("loan_completed", "card_completed", "loan_started", "deposit_started", "deposit_opened")
# triggers twice as likely as goals, so conversations get to run
EVENT_CHOICE = st.sampled_from(TRIGGERS) | st.sampled_from(GOALS)
REACTIONS = ("delivered", "opened", "clicked", "replied", "unsubscribed", "bounced", "complained", "failed")


class Template:
    """One migrated SQLite file with the customers already created, copied for every example."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "template.db"
        built = bootstrap(_settings(f"sqlite:///{self.path}"), migrate=True)
        self.catalogue, self.library = built.catalogue, built.library
        self.cookies: dict[str, str] = {}
        with built.uow() as work:
            for n in range(CUSTOMERS):
                cookie = f"ck-{n}"
                data = CustomerIn.model_validate(
                    {
                        "status": "client",
                        "first_name": f"Client{n}",
                        "timezone": "Europe/Kyiv",
                        "identifiers": [{"kind": "cookie_id", "value": cookie}],
                        "consents": [
                            {
                                "channel": ch,
                                "purpose": "marketing",
                                "granted": True,
                                "effective_at": "2026-01-01T00:00:00Z",
                            }
                            for ch in CHANNELS
                        ],
                    }
                )
                cid, _ = customers.upsert(work.conn, data, actor=ACTOR, now=START - timedelta(days=30))
                self.cookies[cid] = cookie
            work.commit()
        with built.engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        built.close()
        self._copies = itertools.count()

    def fresh(self) -> Container:
        path = self.folder / f"example-{next(self._copies)}.db"
        shutil.copy(self.path, path)
        url = f"sqlite:///{path}"
        return Container(_settings(url), make_engine(url), self.catalogue, self.library)


class ConversationMachine(RuleBasedStateMachine):
    """The decision loop driven by random events, clock jumps and consent changes.

    Invariants 1-3 are checked here; the frequency caps (invariant 4) by the subclass below, so a
    failure of one does not hide the others.
    """

    def __init__(self, template: Template) -> None:
        super().__init__()
        self.container = template.fresh()
        self.library = template.library
        self.customers = sorted(template.cookies)
        self.cookies = template.cookies
        self.now = START
        self.seq = itertools.count(1)

    def teardown(self) -> None:
        self.container.close()

    # --- helpers -----------------------------------------------------------------------------------
    def _event(self, cid: str, kind: Json, lag_minutes: int) -> Json:
        event: Json = {
            "event_id": f"ev-{next(self.seq)}",
            "type": kind["type"],
            "occurred_at": (self.now - timedelta(minutes=lag_minutes)).isoformat(),
            "source": "web",
            "identifiers": {"cookie_id": self.cookies[cid]},
            "attributes": dict(kind["attributes"]),
        }
        if kind["type"].startswith("application."):
            event["attributes"]["application_id"] = f"A-{cid}"
        if "contract_number" in kind["attributes"]:  # contracts are per person
            event["attributes"]["contract_number"] = f"{kind['attributes']['contract_number']}-{cid}"
        return event

    def _ingest_and_consume(self, raw: list[Json]) -> None:
        with self.container.uow() as work:
            prepared = ingest.prepare(raw, self.container.catalogue, ingest.EVENT_KINDS)
            ingest.ingest(work.conn, prepared, actor=ACTOR, now=self.now)
            work.commit()
        consume(self.container.uow, self.library, now=self.now)

    def _rows(self, table: Any) -> list[Json]:
        with self.container.reader() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]

    # --- rules -------------------------------------------------------------------------------------
    @rule(
        batch=st.lists(
            st.tuples(
                st.integers(0, CUSTOMERS - 1),
                EVENT_CHOICE,
                st.integers(0, 30),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def events(self, batch: list[tuple[int, str, int]]) -> None:
        """One to three trigger or goal events (one batch for the decider)."""
        self._ingest_and_consume(
            [self._event(self.customers[i], EVENT_KINDS[kind], lag) for i, kind, lag in batch]
        )

    @rule(pick=st.integers(0, 10_000), reaction=st.sampled_from(REACTIONS))
    def react(self, pick: int, reaction: str) -> None:
        """A reaction to a message sent earlier, by the person it was sent to."""
        messages = [r for r in self._rows(outbox) if r["kind"] == "message"]
        if not messages:
            return
        sent = messages[pick % len(messages)]
        # an opt-out is a consent change: it never shares its instant with a decision (see `consent`)
        self.now += timedelta(minutes=1)
        kind = {"type": "message.reaction", "attributes": {"message_id": sent["payload"]["message_id"]}}
        event = self._event(sent["customer_id"], kind, 0)
        event["attributes"] = {"message_id": sent["payload"]["message_id"], "reaction": reaction}
        self._ingest_and_consume([event])

    @rule(hours=st.integers(1, 72), minutes=st.integers(0, 59), punctual=st.booleans())
    def advance(self, hours: int, minutes: int, punctual: bool) -> None:
        """Move the clock; a punctual worker fires every timer when it expires, a late one once at the end."""
        target = self.now + timedelta(hours=hours, minutes=minutes)
        for _ in range(200) if punctual else ():
            with self.container.reader() as conn:
                due = conn.execute(
                    select(func.min(instances.c.due_at)).where(
                        instances.c.status == "active", instances.c.due_at <= target
                    )
                ).scalar_one_or_none()
            if due is None:
                break
            self.now = max(self.now, due)
            fire_timers(self.container.uow, self.library, now=self.now)
        self.now = target
        fire_timers(self.container.uow, self.library, now=self.now)

    @rule()
    def deliver(self) -> None:
        """The gateway sends every pending outbox row that is available."""
        with self.container.uow() as work:
            work.conn.execute(
                update(outbox)
                .where(outbox.c.status == "queued", outbox.c.available_at <= self.now)
                .values(status="sent")
            )
            work.commit()

    def _consent(self, customer: int, channel: str, granted: bool) -> None:
        self.now += timedelta(minutes=1)  # a consent change never shares its instant with a decision
        consent = ConsentIn(channel=channel, purpose="marketing", granted=granted, effective_at=self.now)  # type: ignore[arg-type]
        with self.container.uow() as work:
            customers.record_consent(work.conn, self.customers[customer], consent, actor=ACTOR, now=self.now)
            work.commit()

    @rule(customer=st.integers(0, CUSTOMERS - 1), channel=st.sampled_from(CHANNELS))
    def withdraw(self, customer: int, channel: str) -> None:
        self._consent(customer, channel, granted=False)

    @rule(customer=st.integers(0, CUSTOMERS - 1), channel=st.sampled_from(CHANNELS))
    def grant(self, customer: int, channel: str) -> None:
        self._consent(customer, channel, granted=True)

    # --- invariants --------------------------------------------------------------------------------
    @invariant()
    def one_active_instance_per_scenario(self) -> None:
        active: dict[tuple[str, str], list[int]] = defaultdict(list)
        for row in self._rows(instances):
            if row["status"] == "active":
                active[(row["customer_id"], row["scenario_id"])].append(row["id"])
        twice = {key: ids for key, ids in active.items() if len(ids) > 1}
        assert not twice, f"two active instances of one scenario: {twice}"

    @invariant()
    def nothing_scheduled_after_goal(self) -> None:
        rows = self._rows(outbox)
        for inst in self._rows(instances):
            if not inst["goal_reached"]:
                continue
            assert inst["status"] == "completed", inst
            assert inst["due_at"] is None, f"a timer is still set after the goal: {inst}"
            mine = [r for r in rows if r["instance_id"] == inst["id"]]
            late = [r for r in mine if r["created_at"] > inst["ended_at"]]
            assert not late, f"contact created after the goal of instance {inst['id']}: {late}"
            pending = [r for r in mine if r["status"] == "queued"]
            assert not pending, f"pending contact left after the goal of instance {inst['id']}: {pending}"

    @invariant()
    def no_marketing_contact_without_consent(self) -> None:
        ledger: dict[tuple[str, str], list[tuple[datetime, bool]]] = defaultdict(list)
        for c in self._rows(consents):
            if c["purpose"] == "marketing":
                ledger[(c["customer_id"], c["channel"])].append((c["effective_at"], c["granted"]))
        for row in self._rows(outbox):
            if row["purpose"] == "service" or row["status"] == "withdrawn":  # withdrawn: never left
                continue
            entries = [e for e in ledger[(row["customer_id"], row["channel"])] if e[0] <= row["created_at"]]
            # the latest entry wins; on a tie a withdrawal wins (README, domain/consent.py)
            granted = bool(entries) and max(entries, key=lambda e: (e[0], not e[1]))[1]
            assert granted, (
                f"{row['kind']} {row['template']} on {row['channel']} at {row['created_at']} "
                f"without marketing consent (ledger: {sorted(entries)})"
            )


class CappedConversationMachine(ConversationMachine):
    """The same machine, also checking the frequency caps of the contact policy."""

    @invariant()
    def frequency_caps_hold(self) -> None:
        policy = self.library.policy
        counted: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        for row in self._rows(outbox):
            if row["purpose"] not in policy.exempt_from_caps and row["status"] != "withdrawn":
                counted[row["customer_id"]].append((row["created_at"], row["channel"]))
        limits: list[tuple[str | None, Cap]] = [(None, policy.caps), *policy.channel_caps.items()]
        for cid, contacts in counted.items():
            for channel, cap in limits:
                times = sorted(at for at, ch in contacts if channel is None or ch == channel)
                for limit, window in ((cap.per_day, DAY), (cap.per_week, WEEK)):
                    if limit is None:
                        continue
                    for start in times:
                        inside = [t for t in times if start <= t < start + window]
                        assert len(inside) <= limit, (
                            f"{cid}: {len(inside)} non-service contacts"
                            f"{' on ' + channel if channel else ''} within {window} from {start} "
                            f"(cap {limit}): {sorted((t.isoformat(), ch) for t, ch in contacts)}"
                        )


RUN = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def template() -> Iterator[Template]:
    folder = Path(tempfile.mkdtemp(prefix="omnicrm-sm-"))
    try:
        built = Template(folder)
        policy = built.library.policy
        assert (policy.caps.per_day, policy.caps.per_week) == (2, 5), "scenarios/policy.yaml changed"
        yield built
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_conversations_respect_reentry_goals_and_consent(template: Template) -> None:
    run_state_machine_as_test(lambda: ConversationMachine(template), settings=RUN)


def test_conversations_respect_frequency_caps(template: Template) -> None:
    run_state_machine_as_test(lambda: CappedConversationMachine(template), settings=RUN)
