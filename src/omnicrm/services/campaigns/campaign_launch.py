"""Launching campaigns: claim, write one campaign event per member in small batches, finish.

A launch writes one `crm.campaign.targeted` event per member of the segment through the ordinary
ingest path (event id `campaign:{campaign}:{customer}`, so a resumed launch writes nothing twice); the
decision worker then decides and starts the conversations, with every hard rule still applied. It runs
in a background thread (the API answers 202 at once), and `launch_due` starts scheduled campaigns and
takes over launches a dead process left running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.campaigns import Action, Status, campaign_event, compile_segment, next_status
from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.decision import CAMPAIGN_EVENT
from omnicrm.domain.errors import Conflict
from omnicrm.domain.scenarios import Library
from omnicrm.services.campaigns.campaigns import (
    STALE,
    Clock,
    Uow,
    get,
    in_segment,
    pages,
    reading,
    row_of,
    scenario_of,
    state_of,
    wall_clock,
)
from omnicrm.services.intake import ingest
from omnicrm.store import audit
from omnicrm.store import campaigns as store
from omnicrm.store.profiles import chunks

log = logging.getLogger(__name__)
BATCH = 1_000  # events written per transaction


def begin_launch(
    conn: Connection, campaign_id: str, *, library: Library, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """Claim the campaign for a launch (approved or failed -> running) in one conditional UPDATE."""
    row = row_of(conn, campaign_id)
    next_status(Action.LAUNCH, state_of(row), actor=actor, role=role, now=now)
    scenario_of(library, row["scenario_id"])
    if not _claim(conn, row, actor=actor, now=now):
        raise Conflict(f"campaign {campaign_id} is already being launched")
    return get(conn, campaign_id)


def _claim(conn: Connection, row: dict[str, Any], *, actor: str, now: datetime) -> bool:
    """The conditional UPDATE to running, audited; False if another launcher got there first."""
    if not store.claim_launch(conn, row["id"], now=now, stale_before=now - STALE):
        return False
    details = {"from": row["status"], "to": Status.RUNNING.value, "resumed": row["status"] != "approved"}
    audit.append(conn, at=now, actor=actor, action="campaign.launched", target=row["id"], details=details)
    return True


def run_launch(
    uow: Uow,
    campaign_id: str,
    *,
    library: Library,
    catalogue: Catalogue,
    clock: Clock = wall_clock,
    after_batch: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Write the events of a claimed (running) campaign, then mark it finished; synchronous.

    A failure is recorded on the campaign (status failed, `error`) and logged, not raised."""
    try:
        _write_audience(uow, campaign_id, library, catalogue, clock, after_batch)
    except Exception as exc:
        log.exception("campaign %s: launch failed", campaign_id)
        with uow() as work:
            values = {"status": Status.FAILED.value, "error": f"{type(exc).__name__}: {exc}"[:500]}
            store.move(work.conn, campaign_id, expected=[Status.RUNNING.value], values=values)
            work.commit()
    with reading(uow) as conn:
        return get(conn, campaign_id)


def _write_audience(
    uow: Uow,
    campaign_id: str,
    library: Library,
    catalogue: Catalogue,
    clock: Clock,
    after_batch: Callable[[], None] | None,
) -> None:
    with reading(uow) as conn:
        row = row_of(conn, campaign_id)
    scenario = scenario_of(library, row["scenario_id"])
    segment = compile_segment(row["segment"])
    event = campaign_event(campaign_id, scenario.id)

    def beat(**values: Any) -> bool:  # a heartbeat; False once the campaign is no longer running
        with uow() as work:
            alive = store.move(
                work.conn, campaign_id, expected=["running"], values={"updated_at": clock(), **values}
            )
            work.commit()
        return alive

    members = [
        c.id
        for page in pages(uow, library.policy, clock(), beat)
        for c in page
        if in_segment(segment, c, event)
    ]
    if not beat(audience=len(members), processed=0):
        return
    written = 0
    for part in chunks(members, BATCH):
        at = clock()
        raw = [_event_body(campaign_id, scenario.id, cid, at) for cid in part]
        prepared = ingest.prepare(raw, catalogue, ingest.INTERACTION_KINDS, system=True)
        with uow() as work:
            result = ingest.ingest(work.conn, prepared, actor=f"campaign:{campaign_id}", now=at)
            values = {"processed": written + len(part), "updated_at": at}
            if not store.move(work.conn, campaign_id, expected=["running"], values=values):
                return  # cancelled meanwhile: this batch is rolled back
            work.commit()
        written += len(part)
        log.debug(
            "campaign %s: %d of %d targeted (%d new)", campaign_id, written, len(members), result.accepted
        )
        if after_batch is not None:
            after_batch()
    _finish(uow, campaign_id, len(members), clock())


def _event_body(campaign_id: str, scenario_id: str, customer_id: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": f"campaign:{campaign_id}:{customer_id}",
        "type": CAMPAIGN_EVENT,
        "occurred_at": at,
        "source": "crm",
        "customer_id": customer_id,
        "attributes": {"campaign_id": campaign_id, "scenario_id": scenario_id},
    }


def _finish(uow: Uow, campaign_id: str, audience: int, now: datetime) -> None:
    with uow() as work:
        values = {"status": Status.FINISHED.value, "finished_at": now, "updated_at": now}
        if store.move(work.conn, campaign_id, expected=["running"], values=values):
            details = {"audience": audience}
            audit.append(
                work.conn,
                at=now,
                actor="system",
                action="campaign.finished",
                target=campaign_id,
                details=details,
            )
        work.commit()


def launch(
    uow: Uow,
    campaign_id: str,
    *,
    library: Library,
    catalogue: Catalogue,
    actor: str,
    role: str,
    clock: Clock = wall_clock,
) -> dict[str, Any]:
    """Claim and run a launch in the calling thread (the API runs `run_launch` in a thread instead)."""
    with uow() as work:
        begin_launch(work.conn, campaign_id, library=library, actor=actor, role=role, now=clock())
        work.commit()
    return run_launch(uow, campaign_id, library=library, catalogue=catalogue, clock=clock)


def launch_in_background(
    uow: Uow,
    campaign_id: str,
    *,
    library: Library,
    catalogue: Catalogue,
    after_batch: Callable[[], None] | None = None,
) -> threading.Thread:
    """Run an already claimed launch in a daemon thread (a process that dies leaves it to `launch_due`)."""
    thread = threading.Thread(
        target=run_launch,
        args=(uow, campaign_id),
        kwargs={"library": library, "catalogue": catalogue, "after_batch": after_batch},
        name=f"campaign-{campaign_id}",
        daemon=True,
    )
    thread.start()
    return thread


def launch_due(
    uow: Uow,
    *,
    library: Library,
    catalogue: Catalogue,
    clock: Clock = wall_clock,
    after_batch: Callable[[], None] | None = None,
) -> list[str]:
    """Launch approved campaigns whose `starts_at` has come, and resume launches a dead process left
    running; synchronous (for the worker loop). Returns the ids it launched or resumed."""
    now = clock()
    with reading(uow) as conn:
        due = store.due_for_launch(conn, now=now, stale_before=now - STALE)
    launched: list[str] = []
    for campaign_id in due:
        with uow() as work:
            if not _claim(work.conn, row_of(work.conn, campaign_id), actor="scheduler", now=now):
                continue
            work.commit()
        run_launch(
            uow, campaign_id, library=library, catalogue=catalogue, clock=clock, after_batch=after_batch
        )
        launched.append(campaign_id)
    return launched


class CampaignScheduler:
    """A background thread that runs `launch_due` every `interval_s` (scheduled starts, and launches
    a dead process left running). Several processes may run one: the claim lets only one launch."""

    def __init__(
        self,
        uow: Uow,
        library: Callable[[], Library],
        catalogue: Catalogue,
        *,
        interval_s: float,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        self.uow, self.library, self.catalogue = uow, library, catalogue
        self.interval_s, self.after_batch = interval_s, after_batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="omnicrm-campaigns", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                launch_due(
                    self.uow, library=self.library(), catalogue=self.catalogue, after_batch=self.after_batch
                )
            except Exception:
                log.exception("campaign scheduler: round failed, will retry")
