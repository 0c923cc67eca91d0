"""Campaigns end to end at the service level, on SQLite and PostgreSQL: create (and refuse), maker-checker,
dry run against hand-counted expectations, launch (idempotent on resume), and the decisions and outbox
the decision worker makes of the launched events."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from omnicrm.bootstrap import Container
from omnicrm.domain.decision import CAMPAIGN_EVENT
from omnicrm.domain.errors import Conflict, Forbidden, InvalidInput
from omnicrm.services.campaigns import campaign_launch as launching
from omnicrm.services.campaigns import campaigns
from omnicrm.services.campaigns.campaigns import CampaignIn
from omnicrm.services.contracts import CustomerIn
from omnicrm.services.conversations.decider import consume
from omnicrm.services.intake import ingest
from omnicrm.services.profiles import customers, identity
from omnicrm.store import campaigns as store
from omnicrm.store.tables import audit_log, decisions, events, outbox
from omnicrm.store.tables import campaigns as campaigns_table

SCENARIO = "pre-approved-loan-follow-up"  # commercial; client, not vulnerable, no complaint; push first
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # 12:00 in Kyiv, 23:00 in Auckland (quiet hours)
SEGMENT = '"spring" in customer.segments'
_SEQ = itertools.count(1)


def clock() -> datetime:
    return T0


def new_customer(
    container: Container, *, channels: Iterable[str] = ("webpush", "email"), **fields: Any
) -> str:
    body: dict[str, Any] = {
        "status": "client",
        "identifiers": [{"kind": "cookie_id", "value": f"camp-{next(_SEQ)}"}],
        "consents": [
            {"channel": c, "purpose": "marketing", "granted": True, "effective_at": "2026-01-01T00:00:00Z"}
            for c in channels
        ],
        **fields,
    }
    with container.uow() as uow:
        cid, _ = customers.upsert(uow.conn, CustomerIn.model_validate(body), actor="test", now=T0)
        uow.commit()
    return cid


def drain_at(container: Container, now: datetime) -> int:
    """Run the decision worker until no event is left, at a fixed clock; returns events handled."""
    handled = 0
    while events := consume(container.uow, container.library, now=now).events:
        handled += events
    return handled


class World:
    """Ten live profiles (and one merged away), each built to meet one rule of the engine."""

    def __init__(self, container: Container) -> None:
        spring = {"segments": ["spring"]}
        self.ok = [new_customer(container, **spring), new_customer(container, **spring)]
        self.no_consent = new_customer(container, channels=(), **spring)
        self.fraud = new_customer(container, constraints={"fraud_case_open": True}, **spring)
        self.vulnerable = new_customer(container, constraints={"vulnerable": True}, **spring)
        self.prospect = new_customer(container, status="prospect", **spring)
        self.night = new_customer(container, timezone="Pacific/Auckland", **spring)
        self.busy = new_customer(container, **spring)
        self.outside = new_customer(container, segments=["autumn"])
        older, merged = new_customer(container), new_customer(container, **spring)
        with container.uow() as uow:
            # The survivor takes the merged profile's segment: it is in the campaign; the other is not.
            self.survivor = identity.merge_pair(uow.conn, older, merged, reason="same", actor="test", now=T0)
            uow.commit()
        # `busy` is already in a commercial conversation (an abandoned loan application an hour ago).
        raw = {
            "event_id": f"busy-{next(_SEQ)}",
            "type": "application.abandoned",
            "occurred_at": (T0 - timedelta(hours=1)).isoformat(),
            "source": "web",
            "customer_id": self.busy,
            "attributes": {
                "product_class": "consumer_loan",
                "application_id": "A-1",
                "last_step": "documents",
            },
        }
        with container.uow() as uow:
            prepared = ingest.prepare([raw], container.catalogue, ingest.EVENT_KINDS)
            ingest.ingest(uow.conn, prepared, actor="test", now=T0 - timedelta(hours=1))
            uow.commit()
        assert drain_at(container, T0 - timedelta(hours=1)) == 1

    @property
    def members(self) -> set[str]:
        people = [self.no_consent, self.fraud, self.vulnerable, self.prospect, self.night, self.busy]
        return {*self.ok, *people, self.survivor}


EXPECTED_DRY_RUN = {
    "audience": 9,
    "would_contact": 3,  # the two `ok` and the merge survivor
    "would_delay": 1,  # night: quiet hours in Auckland
    "would_escalate": 0,
    "would_join": 0,
    "suppressed": {"arbitration": 1, "audience": 2, "channel": 1, "fraud_case": 1},
    "channels": {"webpush": 4},
    "population": 10,
    "segment_errors": 0,
}


@pytest.fixture
def world(container: Container) -> World:
    return World(container)


def create(container: Container, segment: str = SEGMENT, scenario_id: str = SCENARIO, **fields: Any) -> str:
    body = CampaignIn(name="Spring loans", scenario_id=scenario_id, segment=segment, **fields)
    with container.uow() as uow:
        row = campaigns.create(uow.conn, body, library=container.library, actor="maria", now=T0)
        uow.commit()
    return str(row["id"])


def dry_run(container: Container, campaign_id: str) -> dict[str, Any]:
    return campaigns.dry_run(
        container.uow, campaign_id, library=container.library, actor="maria", role="marketer", now=T0
    )


def approved(container: Container, **fields: Any) -> str:
    campaign_id = create(container, **fields)
    with container.uow() as uow:
        campaigns.submit(uow.conn, campaign_id, actor="maria", role="marketer", now=T0)
        uow.commit()
    dry_run(container, campaign_id)
    with container.uow() as uow:
        campaigns.approve(uow.conn, campaign_id, actor="olga", role="compliance", now=T0)
        uow.commit()
    return campaign_id


def launch(container: Container, campaign_id: str) -> dict[str, Any]:
    return launching.launch(
        container.uow,
        campaign_id,
        library=container.library,
        catalogue=container.catalogue,
        actor="maria",
        role="marketer",
        clock=clock,
    )


def row(container: Container, campaign_id: str) -> dict[str, Any]:
    with container.reader() as conn:
        return campaigns.get(conn, campaign_id)


def targeted(container: Container) -> list[tuple[str, str]]:
    with container.reader() as conn:
        query = select(events.c.event_id, events.c.customer_id).where(events.c.type == CAMPAIGN_EVENT)
        return sorted((e, c) for e, c in conn.execute(query))


def audit_count(container: Container) -> int:
    with container.reader() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


# --------------------------------------------------------------------------------------- create


@pytest.mark.parametrize(
    ("segment", "scenario_id", "field", "reason"),
    [
        ("customer.status ==", SCENARIO, "segment", "Syntax error"),
        ('customer.tier == "gold"', SCENARIO, "segment", "cannot run on a sample client"),
        (SEGMENT, "no-such-scenario", "scenario_id", "no scenario 'no-such-scenario'"),
    ],
)
def test_a_refused_campaign_writes_nothing(
    container: Container, segment: str, scenario_id: str, field: str, reason: str
) -> None:
    before = audit_count(container)
    with pytest.raises(InvalidInput) as caught:
        create(container, segment=segment, scenario_id=scenario_id)
    assert [e.field for e in caught.value.errors] == [field]
    assert reason in caught.value.errors[0].reason
    with container.reader() as conn:
        assert conn.execute(select(func.count()).select_from(campaigns_table)).scalar_one() == 0
    assert audit_count(container) == before


def test_maker_checker_and_history(container: Container) -> None:
    campaign_id = create(container)
    with container.uow() as uow:
        campaigns.submit(uow.conn, campaign_id, actor="maria", role="marketer", now=T0)
        with pytest.raises(Conflict, match="no dry run yet"):
            campaigns.approve(uow.conn, campaign_id, actor="olga", role="compliance", now=T0)
        uow.commit()
    dry_run(container, campaign_id)
    with container.uow() as uow:
        with pytest.raises(Forbidden, match="maker-checker"):
            campaigns.approve(uow.conn, campaign_id, actor="maria", role="marketer", now=T0)
        campaigns.reject(uow.conn, campaign_id, reason="wrong month", actor="olga", role="compliance", now=T0)
        uow.commit()
    got = row(container, campaign_id)
    assert got["status"] == "draft"
    assert got["submitted_by"] is None
    assert [(h["actor"], h["action"]) for h in got["history"]] == [
        ("maria", "campaign.created"),
        ("maria", "campaign.submit"),
        ("olga", "campaign.reject"),
    ]
    assert got["history"][-1]["details"]["reason"] == "wrong month"


# -------------------------------------------------------------------------------------- dry run


def test_dry_run_counts_match_the_hand_made_expectation_and_write_nothing_else(
    container: Container, world: World
) -> None:
    campaign_id = create(container)
    before = (targeted(container), audit_count(container))
    summary = dry_run(container, campaign_id)
    assert {k: summary[k] for k in EXPECTED_DRY_RUN} == EXPECTED_DRY_RUN
    assert summary["computed_at"] == T0.isoformat()
    assert row(container, campaign_id)["dry_run"] == summary
    assert (targeted(container), audit_count(container)) == before
    with container.reader() as conn:
        assert conn.execute(select(func.count()).select_from(decisions)).scalar_one() == 1  # busy's own


# --------------------------------------------------------------------------------------- launch


def test_launch_writes_one_event_per_member_and_the_worker_contacts_them(
    container: Container, world: World
) -> None:
    campaign_id = approved(container)
    done = launch(container, campaign_id)
    assert (done["status"], done["audience"], done["processed"]) == ("finished", 9, 9)
    assert targeted(container) == sorted((f"campaign:{campaign_id}:{c}", c) for c in world.members)
    assert [h["action"] for h in done["history"]][-2:] == ["campaign.launched", "campaign.finished"]

    with container.reader() as conn:
        sent_before = set(conn.execute(select(outbox.c.id)).scalars())
    assert drain_at(container, T0) == 9
    with container.reader() as conn:
        new = [(r.customer_id, r.channel) for r in conn.execute(select(outbox)) if r.id not in sent_before]
        query = select(decisions.c.action).where(decisions.c.event_id.like(f"campaign:{campaign_id}:%"))
        actions = Counter(conn.execute(query).scalars())
    assert sorted(new) == sorted((c, "webpush") for c in [*world.ok, world.survivor])
    assert actions == {"contact": 3, "delay": 1, "suppress": 5}  # as the dry run predicted


def test_a_failed_launch_resumes_without_writing_anything_twice(
    container: Container, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = approved(container)
    monkeypatch.setattr(launching, "BATCH", 4)
    batches = itertools.count(1)

    def crash_after_the_first_batch() -> None:
        if next(batches) == 1:
            raise OSError("the disk went away")

    with container.uow() as uow:
        launching.begin_launch(
            uow.conn, campaign_id, library=container.library, actor="m", role="admin", now=T0
        )
        uow.commit()
    failed = launching.run_launch(
        container.uow,
        campaign_id,
        library=container.library,
        catalogue=container.catalogue,
        clock=clock,
        after_batch=crash_after_the_first_batch,
    )
    assert (failed["status"], failed["processed"]) == ("failed", 4)
    assert failed["error"] == "OSError: the disk went away"
    assert len(targeted(container)) == 4

    resumed = launch(container, campaign_id)
    assert (resumed["status"], resumed["processed"], resumed["error"]) == ("finished", 9, None)
    assert targeted(container) == sorted((f"campaign:{campaign_id}:{c}", c) for c in world.members)
    with pytest.raises(Conflict, match="is finished"):
        launch(container, campaign_id)
    assert len(targeted(container)) == 9


def test_launch_due_starts_scheduled_campaigns_and_takes_over_dead_launches(
    container: Container, world: World
) -> None:
    later = approved(container, starts_at=T0 + timedelta(minutes=2))
    due = approved(container, starts_at=T0)
    manual = approved(container)  # no start time: waits for someone to launch it
    with pytest.raises(Conflict, match="scheduled for"):
        launch(container, later)
    kwargs: dict[str, Any] = {"library": container.library, "catalogue": container.catalogue}
    assert launching.launch_due(container.uow, clock=clock, **kwargs) == [due]
    assert row(container, due)["status"] == "finished"
    assert {row(container, c)["status"] for c in (later, manual)} == {"approved"}

    # A process died while launching `manual`: running, half written, untouched for a while.
    with container.uow() as uow:
        launching.begin_launch(uow.conn, manual, library=container.library, actor="m", role="admin", now=T0)
        uow.commit()
    assert launching.launch_due(container.uow, clock=clock, **kwargs) == []  # alive as far as we know
    with pytest.raises(Conflict, match="is running"):
        launch(container, manual)
    soon = T0 + launching.STALE + timedelta(minutes=1)
    assert sorted(launching.launch_due(container.uow, clock=lambda: soon, **kwargs)) == sorted(
        [later, manual]
    )
    assert {row(container, c)["status"] for c in (later, manual)} == {"finished"}
    assert len(targeted(container)) == 3 * 9


def test_two_launchers_cannot_both_claim_a_campaign(container: Container) -> None:
    campaign_id = approved(container)
    stale_before = T0 - launching.STALE
    with container.uow() as uow:
        first = store.claim_launch(uow.conn, campaign_id, now=T0, stale_before=stale_before)
        second = store.claim_launch(uow.conn, campaign_id, now=T0, stale_before=stale_before)
        uow.commit()
    assert (first, second) == (True, False)
    with container.uow() as uow, pytest.raises(Conflict, match="is running"):
        launching.begin_launch(
            uow.conn, campaign_id, library=container.library, actor="b", role="admin", now=T0
        )


def test_cancelling_a_running_launch_stops_it_after_the_batch(
    container: Container, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = approved(container)
    monkeypatch.setattr(launching, "BATCH", 4)

    def cancel() -> None:
        with container.uow() as uow:
            campaigns.cancel(uow.conn, campaign_id, reason="stop it", actor="olga", role="compliance", now=T0)
            uow.commit()

    with container.uow() as uow:
        launching.begin_launch(
            uow.conn, campaign_id, library=container.library, actor="m", role="admin", now=T0
        )
        uow.commit()
    stopped = launching.run_launch(
        container.uow,
        campaign_id,
        library=container.library,
        catalogue=container.catalogue,
        clock=clock,
        after_batch=cancel,
    )
    assert (stopped["status"], stopped["processed"]) == ("cancelled", 4)
    assert len(targeted(container)) == 4


def test_a_segment_that_fails_on_one_profile_skips_it_and_counts_it(
    container: Container, world: World
) -> None:
    # Runs on the sample client (one product) but not on a profile without products.
    campaign_id = create(container, segment='products[0].state != "closed"')
    summary = dry_run(container, campaign_id)
    assert summary["segment_errors"] == 10
    assert summary["audience"] == 0


def test_the_scheduler_thread_launches_a_due_campaign(container: Container, world: World) -> None:
    due = approved(container, starts_at=T0)  # in the past by the wall clock the thread uses
    nudged = threading.Event()
    scheduler = launching.CampaignScheduler(
        container.uow,
        lambda: container.library,
        container.catalogue,
        interval_s=0.05,
        after_batch=nudged.set,
    )
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while row(container, due)["status"] != "finished" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.stop()
    assert row(container, due)["status"] == "finished"
    assert nudged.is_set()
    assert len(targeted(container)) == len(world.members)
