"""The outbox relay: status events from the timeline to the broker, the offset moved only after
the broker confirmed the whole batch.

    offset = load_offset()                       e.g. the `bridge.relay` row of consumer_offsets
    rows = read_after(offset, limit)             [(pk, CloudEvent)], pk ascending
    broker.publish([event for _, event in rows]) returns only once every event is confirmed
    save_offset(rows[-1].pk)                     in its own committed transaction

A crash (or a `NotConfirmed`) before `save_offset` leaves the offset where it was, so the next run
publishes the same events again: at least once. The CloudEvent id is the timeline event's id, so
JetStream stores a republished event once (`Nats-Msg-Id`), and every consumer can drop a repeat by
id. Nothing is ever skipped: the offset never passes an event the broker did not confirm.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from omnicrm.bridge.base import Broker
from omnicrm.bridge.envelope import CloudEvent

log = logging.getLogger(__name__)
ReadAfter = Callable[[int, int], Sequence[tuple[int, CloudEvent]]]


@dataclass(slots=True)
class Relay:
    """Moves status events from a stored offset to a broker; `run_once` is one batch."""

    broker: Broker
    read_after: ReadAfter
    load_offset: Callable[[], int]
    save_offset: Callable[[int], None]
    batch: int = 500

    def run_once(self) -> int:
        """Publish the next batch; returns how many events the broker confirmed (0: none waiting).
        `NotConfirmed` propagates with the offset unmoved; the caller backs off and calls again."""
        offset = self.load_offset()
        rows = self.read_after(offset, self.batch)
        if not rows:
            return 0
        pks = [pk for pk, _ in rows]
        if any(b <= a for a, b in itertools.pairwise(pks)) or pks[0] <= offset:
            raise ValueError("read_after must return rows after the offset in ascending pk order")
        self.broker.publish([event for _, event in rows])
        self.save_offset(pks[-1])
        log.info("bridge relay: %d status events published, offset %d -> %d", len(rows), offset, pks[-1])
        return len(rows)

    def drain(self, *, limit: int | None = None) -> int:
        """Run batches until none is waiting (or `limit` events went); returns the number published."""
        total = 0
        while limit is None or total < limit:
            sent = self.run_once()
            if not sent:
                break
            total += sent
        return total
