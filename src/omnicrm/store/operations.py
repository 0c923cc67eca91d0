"""The figures operators watch, read from the database in one short read: decision lag, due timers,
the outbox by channel, status and provider, and webhook intake.

Read at the moment they are asked for (a Prometheus scrape, the worker's status line) rather than
counted in a process, so they are right however many API and worker processes run, and after a
restart. `GET /metrics` (api/metrics.py) and `omnicrm worker`'s status line (cli/status.py) both
show these numbers, so the two never disagree.

Cost of one reading, measured once (2026-12-02, a busy 2-core machine; 100,000 outbox rows, 100,000
events, 100,000 feedback rows, 10,000 conversations), SQLite / PostgreSQL:
- lag (max event pk, the decider's offsets, the first undecided event by pk): 0.3 / 0.8 ms, index look-ups;
- timers (ix_instances_due, status + due_at): 1.0 / 0.5 ms, a range of the index;
- outbox by channel, status and provider: ~100-200 / 49 ms, a full scan (no index holds channel or
  provider); 28 / 28 ms with a covering index (channel, status, provider, attempts), which needs a
  migration;
- feedback by source: 8.5 ms (covering primary key) / 16 ms (a sequential scan on a fresh table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.engine import Connection

from omnicrm.store.tables import events, feedback_inbox, instances, offsets, outbox

DECIDER: str = (
    "decider"  # services/conversations/decider.py's consumer; a parallel catch-up adds `decider/<i>of<n>`
)
_CATCH_UP_BOUND = f"{DECIDER}/upto"

_NEWEST_EVENT = select(func.coalesce(func.max(events.c.id), 0))
_DECIDER_OFFSETS = select(offsets.c.consumer, offsets.c.last_event_pk).where(
    or_(offsets.c.consumer == DECIDER, offsets.c.consumer.startswith(f"{DECIDER}/"))
)
_ACTIVE_TIMERS = and_(instances.c.status == "active", instances.c.due_at.is_not(None))


@dataclass(frozen=True, slots=True)
class OutboxGroup:
    """Outbox rows of one (channel, status, provider); provider "" when none took it yet."""

    channel: str
    status: str
    provider: str
    rows: int
    retries: int  # sends tried beyond the first: sum(attempts - 1) over rows tried more than once


@dataclass(frozen=True, slots=True)
class Figures:
    """One reading of the service's state."""

    newest_event: int  # the newest event's pk
    decided_upto: int  # the decision worker's position (the slowest partition's during a catch-up)
    oldest_undecided_received_at: datetime | None  # None: nothing waits
    timers_due: int  # active conversations whose wait has timed out (due_at <= now)
    timers_waiting: int  # active conversations with a timer set, due or not
    outbox: tuple[OutboxGroup, ...] = ()
    webhooks: Mapping[str, int] = field(default_factory=dict)  # feedback_inbox rows per source
    read_at: datetime | None = None

    @property
    def lag_events(self) -> int:
        """Events not yet decided (by pk: an upper bound where a sequence skipped ids)."""
        return max(0, self.newest_event - self.decided_upto)

    @property
    def lag_seconds(self) -> float:
        """Age of the oldest undecided event (0 when none waits)."""
        if self.oldest_undecided_received_at is None or self.read_at is None:
            return 0.0
        return max(0.0, (self.read_at - self.oldest_undecided_received_at).total_seconds())

    def outbox_by(self, *, status: str | None = None) -> int:
        """Outbox rows in `status` (every row when None), over all channels and providers."""
        return sum(g.rows for g in self.outbox if status is None or g.status == status)


def decided_position(positions: Mapping[str, int]) -> int:
    """Where the decision worker stands, from its offset rows: during a parallel catch-up each
    partition has its own, and events after the slowest one are not all decided yet."""
    partitions = [v for name, v in positions.items() if name not in (DECIDER, _CATCH_UP_BOUND)]
    if partitions:
        return min(partitions)
    return positions.get(DECIDER, 0)


def read_figures(conn: Connection, now: datetime) -> Figures:
    """Every figure at `now`, on `conn` (one snapshot where the backend gives one)."""
    newest = int(conn.execute(_NEWEST_EVENT).scalar_one())
    decided = decided_position({name: int(pk) for name, pk in conn.execute(_DECIDER_OFFSETS)})
    oldest = conn.execute(
        select(events.c.received_at).where(events.c.id > decided).order_by(events.c.id).limit(1)
    ).scalar_one_or_none()
    due, waiting = conn.execute(
        select(
            func.coalesce(func.sum(case((instances.c.due_at <= now, 1), else_=0)), 0),
            func.count(),
        ).where(_ACTIVE_TIMERS)
    ).one()
    return Figures(
        newest_event=newest,
        decided_upto=decided,
        oldest_undecided_received_at=oldest,
        timers_due=int(due),
        timers_waiting=int(waiting),
        outbox=_outbox(conn),
        webhooks=_webhooks(conn),
        read_at=now,
    )


def _outbox(conn: Connection) -> tuple[OutboxGroup, ...]:
    retries = func.coalesce(
        func.sum(case((outbox.c.attempts > 1, outbox.c.attempts - 1), else_=0)),
        0,
    )
    query = select(outbox.c.channel, outbox.c.status, outbox.c.provider, func.count(), retries).group_by(
        outbox.c.channel, outbox.c.status, outbox.c.provider
    )
    return tuple(
        OutboxGroup(channel, status, provider or "", int(rows), int(tried))
        for channel, status, provider, rows, tried in conn.execute(query)
    )


def _webhooks(conn: Connection) -> dict[str, int]:
    query = select(feedback_inbox.c.source, func.count()).group_by(feedback_inbox.c.source)
    return {source: int(rows) for source, rows in conn.execute(query)}
