"""The decision worker: reads new timeline events in order and runs the orchestration on them.

The events table is the queue (no broker needed in embedded mode); the consumer's offset is
written in the same transaction as the decisions, instances and outbox rows it caused, so every
event is handled exactly once in effect, even after a crash. Expired timers are advanced too.

A batch is decided in a read-only transaction and written in a short second one, so SQLite's one
write lock is not held while the engine thinks (the API's writers would wait for it). The write
transaction first checks that nobody moved the offset or the batch's conversations meanwhile
(another worker, a timer, a scenario migration); if someone did, the batch is decided again inside
it, as if it had held the lock from the start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.partitions import WHOLE, Partition
from omnicrm.domain.scenarios import Library
from omnicrm.services import collector
from omnicrm.services.conversations.batch import Batch
from omnicrm.services.conversations.orchestration import advance_due, plan_due, plan_events
from omnicrm.services.conversations.report import Report
from omnicrm.store import conversations, offsets, timeline
from omnicrm.store.doorbell import Doorbell
from omnicrm.store.leader import Leadership
from omnicrm.store.uow import UnitOfWork

log = logging.getLogger(__name__)
CONSUMER = "decider"
# Events per batch. Each batch reads its people's facts once, so bigger batches read less
# (1,000 -> 2,000 events: -10 % time over the bench data set; 5,000: -12 %), while its write
# transaction (SQLite's one write lock) grows with it. A worker that keeps up sees far smaller
# batches anyway; a long backlog is worked off in bigger ones (catchup.BACKLOG_BATCH).
BATCH = 2000
# The worker beside the API takes smaller bites: its batches share the process (and the interpreter
# lock) with the requests, and a short batch writes its decisions sooner.
LIVE_BATCH = 250
# Expired timers per transaction. A backlog of them (after a stop, a bulk import) is worked off in
# these bites between batches of new events, so fresh events never wait behind thousands of timers.
TIMERS = 500
LIVE_TIMERS = 100


def consumer_of(partition: Partition) -> str:
    return CONSUMER if partition.whole else f"{CONSUMER}/{partition.name}"


def consume(
    uow: Callable[[], UnitOfWork],
    library: Library,
    *,
    limit: int = BATCH,
    now: datetime | None = None,
    partition: Partition = WHOLE,
    upto: int | None = None,
) -> Report:
    """Handle about `limit` new events of `partition`'s customers (up to event pk `upto`); returns
    what was done (`scanned` = 0: nothing left). A partition reads every event and keeps its own."""
    moment = now or datetime.now(UTC)
    consumer = consumer_of(partition)
    with collector.paused():
        writer = uow()
        with writer.reading() as reader:
            positions = offsets.offsets_of(reader.conn, consumer)
            if partition.whole and len(positions) > 1:
                return Report()  # a parallel catch-up is under way: drain() finishes it first
            last = positions.get(consumer, 0 if partition.whole else None)
            if last is None:
                return Report()  # a finished partition (folded back into the whole)
            seen = offsets.versions(reader.conn, partition.slots)
            rows, plan = _plan(reader.conn, library, last, limit, moment, partition, upto)
            if not rows:
                return Report()
            if plan is not None:
                plan.prepare()  # the rows in stored form before the write lock, not while holding it
        with writer as work:
            if (
                offsets.read_offset(work.conn, consumer, moment, create=partition.whole) != last
                or offsets.versions(work.conn, partition.slots, lock=True) != seen
            ):
                log.info("decision worker: state moved while deciding; the batch is decided again")
                report = _consume_locked(work, library, limit, moment, partition, upto)
                report.redone += 1
                return report
            return _write(work, consumer, rows, plan, moment)


def _plan(
    conn: Connection,
    library: Library,
    last: int,
    limit: int,
    moment: datetime,
    partition: Partition,
    upto: int | None,
) -> tuple[list[dict[str, Any]], Batch | None]:
    """The next queued events after `last` (about `limit` of the partition's), and what the engine
    decides on `partition`'s among them, read on `conn` (None: none of them is the partition's).
    The rows returned are the events passed over: whole for the whole queue; for a partition only
    their id and owner, its own events being read in full apart."""
    bound = timeline.committed_bound(conn)
    if upto is not None:
        bound = upto if bound is None else min(bound, upto)
    if partition.whole:
        rows = conversations.events_after(conn, last, limit, upto=bound)
        return rows, plan_events(conn, rows, library=library, now=moment) if rows else None
    owners = conversations.owners_after(conn, last, limit * partition.count, upto=bound)
    mine = conversations.events_by_id(conn, [pk for pk, cid in owners if partition.owns(cid)])
    passed = [{"id": pk, "customer_id": cid} for pk, cid in owners]
    return passed, plan_events(conn, mine, library=library, now=moment) if mine else None


def _write(
    work: UnitOfWork, consumer: str, rows: list[dict[str, Any]], plan: Batch | None, moment: datetime
) -> Report:
    """Write what a batch decided and move the consumer past its events, in `work`; commit."""
    if plan is not None:
        plan.flush(work.conn)
    offsets.write_offset(work.conn, consumer, int(rows[-1]["id"]), moment)
    work.commit()
    report = plan.report if plan is not None else Report()
    report.scanned = len(rows)
    report.decided_at.append(moment)
    return report


def _consume_locked(
    work: UnitOfWork, library: Library, limit: int, moment: datetime, partition: Partition, upto: int | None
) -> Report:
    """The whole batch inside the writer's transaction `work`."""
    consumer = consumer_of(partition)
    last = offsets.read_offset(work.conn, consumer, moment, create=partition.whole)
    if last is None or (partition.whole and len(offsets.offsets_of(work.conn, CONSUMER)) > 1):
        return Report()  # a finished partition, or a catch-up split the queue meanwhile
    rows, plan = _plan(work.conn, library, last, limit, moment, partition, upto)
    if not rows:
        return Report()
    return _write(work, consumer, rows, plan, moment)


def fire_timers(
    uow: Callable[[], UnitOfWork], library: Library, *, now: datetime | None = None, limit: int = TIMERS
) -> Report:
    """Advance up to `limit` conversations whose timer expired: decided on a snapshot, written in a
    short transaction unless a conversation moved meanwhile (then again under the lock)."""
    moment = now or datetime.now(UTC)
    with collector.paused():
        writer = uow()
        with writer.reading() as reader:
            seen = offsets.versions(reader.conn, WHOLE.slots)
            plan = plan_due(reader.conn, library=library, now=moment, limit=limit)
        if plan is None:
            return Report()
        with writer as work:
            if offsets.versions(work.conn, WHOLE.slots, lock=True) != seen:
                report = advance_due(work.conn, library=library, now=moment, limit=limit)
                work.commit()
                report.redone += 1
                return report
            plan.flush(work.conn)
            work.commit()
    return plan.report


def drain(
    uow: Callable[[], UnitOfWork],
    library: Library,
    *,
    limit: int = BATCH,
    partition: Partition = WHOLE,
    upto: int | None = None,
    now: datetime | None = None,
    timers: int = TIMERS,
    timer_rounds: int | None = None,
) -> Report:
    """Consume until no new event is left (or `upto`), then fire due timers, `timers` per
    transaction, until none is due (or for `timer_rounds` transactions); returns the totals.
    The whole queue's drain first finishes a parallel catch-up a crashed process left behind.
    `now`: the clock of every batch (default: the time each one starts)."""
    total = Report()
    if partition.whole:
        total.add(resume_partitions(uow, library, limit=limit, now=now))
    while True:
        report = consume(uow, library, limit=limit, partition=partition, upto=upto, now=now)
        if not report.scanned:
            break
        total.add(report)
    rounds = 0
    while partition.whole and (timer_rounds is None or rounds < timer_rounds):
        report = fire_timers(uow, library, now=now, limit=timers)
        total.add(report)
        rounds += 1
        if report.timers < timers:
            break
    return total


# --- parallel catch-up: the queue up to a bound split among partitions (see catchup.py)
UPTO = f"{CONSUMER}/upto"


def split(uow: Callable[[], UnitOfWork], count: int) -> int | None:
    """Hand the queued events (up to the newest now) to `count` partitions and move the whole
    queue's offset past them, in one transaction; returns the bound (None: nothing to split).
    Until the partitions are folded back, the whole queue's consumers finish them first."""
    moment = datetime.now(UTC)
    with uow() as work:
        if any(name != CONSUMER for name in offsets.offsets_of(work.conn, CONSUMER)):
            return None  # a catch-up is already under way
        last = offsets.read_offset(work.conn, CONSUMER, moment)
        assert last is not None
        bound = timeline.newest_pk(work.conn)
        if bound <= last:
            return None
        positions = {consumer_of(Partition(i, count)): last for i in range(count)}
        offsets.set_offsets(work.conn, {**positions, UPTO: bound, CONSUMER: bound}, moment)
        work.commit()
    return bound


def backlog(uow: Callable[[], UnitOfWork]) -> int:
    """How many events wait for the whole queue's consumer (by their pks: an upper bound)."""
    with uow().reading() as reader:
        last = offsets.offsets_of(reader.conn, CONSUMER).get(CONSUMER, 0)
        return max(0, timeline.newest_pk(reader.conn) - last)


def resume_partitions(
    uow: Callable[[], UnitOfWork], library: Library, *, limit: int = BATCH, now: datetime | None = None
) -> Report:
    """Finish (in this process, one after another) the partitions of a catch-up, then fold them."""
    with uow().reading() as reader:
        positions = offsets.offsets_of(reader.conn, f"{CONSUMER}/")
    upto = positions.pop(UPTO, None)
    total = Report()
    if upto is None:
        return total
    for name in positions:
        index, count = (int(n) for n in name.removeprefix(f"{CONSUMER}/").split("of"))
        partition = Partition(index, count)
        total.add(drain(uow, library, limit=limit, partition=partition, upto=upto, now=now))
    fold(uow)
    return total


def fold(uow: Callable[[], UnitOfWork]) -> bool:
    """Drop the partitions' offsets once every one of them reached the bound; True if folded."""
    with uow() as work:
        positions = offsets.offsets_of(work.conn, f"{CONSUMER}/")
        upto = positions.pop(UPTO, None)
        if upto is None or any(_left(work.conn, value, upto) for value in positions.values()):
            return False
        offsets.drop_offsets(work.conn, [*positions, UPTO])
        work.commit()
    return True


def _left(conn: Connection, last: int, upto: int) -> bool:
    """Whether events are left between `last` and `upto` for a partition at `last`."""
    return last < upto and bool(conversations.events_after(conn, last, 1, upto=upto))


class DecisionWorker:
    """A background thread running `drain`; `nudge()` wakes it at once (after an event is committed)."""

    def __init__(
        self, uow: Callable[[], UnitOfWork], library: Callable[[], Library], *, idle_s: float
    ) -> None:
        self.uow, self.library, self.idle_s = uow, library, idle_s
        engine = uow().engine
        self.leadership = Leadership(engine)  # one deciding process per database
        self.doorbell = Doorbell(engine)
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
        """New events are committed: wake the decision worker - this thread if it decides here,
        else the process that does (`omnicrm worker`, or the one `serve` starts)."""
        self._wake.set()
        if not self.leadership.held:
            self.doorbell.ring()

    def _run(self) -> None:
        busy = False
        while not self._stop.is_set():
            if not busy:  # after work, look again at once: a backlog of timers is worked off in bites
                self._wake.wait(self.idle_s)
            self._wake.clear()
            busy = False
            try:
                if not self.leadership.acquire():
                    continue  # another process decides on this database; stand by and ask again
                report = drain(self.uow, self.library(), limit=LIVE_BATCH, timers=LIVE_TIMERS, timer_rounds=1)
                busy = bool(report.scanned or report.timers)
            except Exception:
                log.exception("decision worker: batch failed, will retry")
