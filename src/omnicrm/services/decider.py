"""The decision worker: reads new timeline events in order and runs the orchestration on them.

The events table is the queue (no broker needed in embedded mode); the consumer's offset is
written in the same transaction as the decisions, instances and outbox rows it caused, so every
event is handled exactly once in effect, even after a crash. Expired timers are advanced too.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from omnicrm.domain.scenarios import Library
from omnicrm.services.orchestration import Report, advance_due, process_events
from omnicrm.store import conversations, timeline
from omnicrm.store.leader import Leadership
from omnicrm.store.uow import UnitOfWork

log = logging.getLogger(__name__)
CONSUMER = "decider"
# Events per transaction when catching up. Each batch reads its people's facts once, so bigger
# batches read less (1,000 -> 2,000 events: -10 % time over the bench data set; 5,000: -12 %), but
# on SQLite the batch holds the write lock while it is decided (~0.2 s for 2,000 here), which
# other writers (ingest) wait for. A worker that keeps up sees far smaller batches anyway.
BATCH = 2000
# The worker beside the API takes smaller bites: on SQLite a batch holds the one write lock while it
# is decided, and the API's writers wait for it (2,000 events ~0.2 s; 250 ~0.03 s).
LIVE_BATCH = 250


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while one batch is handled.

    A batch builds a few hundred thousand objects that all live until it ends (rows, facts,
    decisions); every full pass of the collector walks all of them and everything else alive, which
    cost a sixth of a large drain. They are freed by reference counting when the batch ends, and
    the collector resumes then (left as it was found if someone else paused it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def consume(
    uow: Callable[[], UnitOfWork], library: Library, *, limit: int = BATCH, now: datetime | None = None
) -> Report:
    """Handle up to `limit` new events in one transaction; returns what was done (events=0: idle)."""
    with _collector_paused(), uow() as work:
        moment = now or datetime.now(UTC)
        bound = timeline.committed_bound(work.conn)
        last = conversations.read_offset(work.conn, CONSUMER, moment)
        rows = conversations.events_after(work.conn, last, limit, upto=bound)
        if not rows:
            return Report()
        report = process_events(work.conn, rows, library=library, now=moment)
        conversations.write_offset(work.conn, CONSUMER, int(rows[-1]["id"]), moment)
        work.commit()
    report.decided_at.append(moment)
    return report


def fire_timers(
    uow: Callable[[], UnitOfWork], library: Library, *, now: datetime | None = None, limit: int = 500
) -> Report:
    """Advance the conversations whose timer expired, in one transaction."""
    with _collector_paused(), uow() as work:
        report = advance_due(work.conn, library=library, now=now or datetime.now(UTC), limit=limit)
        work.commit()
    return report


def drain(uow: Callable[[], UnitOfWork], library: Library, *, limit: int = BATCH) -> Report:
    """Consume until no new event is left, then fire due timers; returns the totals."""
    total = Report()
    while True:
        report = consume(uow, library, limit=limit)
        if not report.events:
            break
        total.add(report)
    total.add(fire_timers(uow, library))
    return total


class DecisionWorker:
    """A background thread running `drain`; `nudge()` wakes it at once (after an event is committed)."""

    def __init__(
        self, uow: Callable[[], UnitOfWork], library: Callable[[], Library], *, idle_s: float
    ) -> None:
        self.uow, self.library, self.idle_s = uow, library, idle_s
        self.leadership = Leadership(uow().engine)  # one deciding process per database
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="omnicrm-decider", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.leadership.release()

    def nudge(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.idle_s)
            self._wake.clear()
            try:
                if not self.leadership.acquire():
                    continue  # another process decides on this database; stand by and ask again
                drain(self.uow, self.library(), limit=LIVE_BATCH)
            except Exception:
                log.exception("decision worker: batch failed, will retry")
