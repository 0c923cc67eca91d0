"""One small interface for every message broker the bridge speaks (RabbitMQ, NATS JetStream; Kafka
plugs in the same way, see docs/broker-bridge.md).

    publish(events)                  returns only once the broker confirmed every event, or raises
                                     `NotConfirmed`: the outbox relay moves its offset after it
    consume(handler, batch, timeout) hands a batch of deliveries to `handler`, which answers one
                                     `Verdict` per delivery; acks only after the handler returned

A `Done` delivery is acked. An `Invalid` one (and a body that is no CloudEvent at all) goes to the
dead-letter queue or stream with its reason, then is acked on the source: a bad message is seen,
not requeued forever. A handler that raises leaves the whole batch unacked: the broker redelivers
it, and the CloudEvent id makes the second delivery a duplicate at intake.

The API is synchronous, as the worker is; the clients are asyncio libraries, so each broker owns
an event loop and runs its coroutines on it (`AsyncRunner`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from omnicrm.bridge.envelope import CloudEvent, InvalidEnvelope, parse

T = TypeVar("T")


class BridgeError(Exception):
    """Something between omnicrm and the broker failed; the message says what, never a value."""


class NotConfirmed(BridgeError):
    """The broker did not confirm every event of a publish (refused, unroutable, unreachable, timed
    out): the caller must treat the whole batch as not published and send it again later."""


class BrokerUnavailable(BridgeError):
    """The broker could not be reached or the connection broke while consuming; unacked messages
    stay with the broker and are delivered again after the next connect."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a handler: the event and whether the broker delivered it before."""

    event: CloudEvent
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class Done:
    """The handler took the event (stored it, or found it a duplicate): ack it."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """The event can never be taken (unknown type, refused by intake): dead-letter it with `reason`.
    The reason is stored beside the message and logged, so it names fields, never their values."""

    reason: str


Verdict = Done | Invalid
DONE = Done()
Handler = Callable[[list[Delivery]], list[Verdict]]


class Broker(Protocol):
    """What the relay and the consumer loop need of a broker."""

    def publish(self, events: Sequence[CloudEvent]) -> None:
        """Publish the events, persistently, and return once the broker confirmed each of them."""

    def consume(self, handler: Handler, *, batch: int = 100, timeout: float = 1.0) -> int:
        """Wait up to `timeout` seconds for messages, hand up to `batch` of them to `handler`, then
        ack, dead-letter or (handler raised) give them back. Returns the number of messages settled
        (acked on the source, dead-lettered ones included)."""

    def close(self) -> None:
        """Close the connection; unacked messages go back to the broker."""


@dataclass(frozen=True, slots=True)
class Sorted:
    """A fetched batch split by the envelope check: `valid[i]` came from `tokens[valid_at[i]]`."""

    deliveries: list[Delivery]
    valid_at: list[int]
    invalid: list[tuple[int, str]]  # (index in the batch, reason)


def sort_bodies(bodies: Sequence[tuple[bytes, bool]]) -> Sorted:
    """Parse each (body, redelivered); a body that is no CloudEvent is set aside with its reason."""
    deliveries, valid_at, invalid = [], [], []
    for index, (body, redelivered) in enumerate(bodies):
        try:
            deliveries.append(Delivery(parse(body), redelivered))
            valid_at.append(index)
        except InvalidEnvelope as exc:
            invalid.append((index, exc.reason))
    return Sorted(deliveries, valid_at, invalid)


def judge(handler: Handler, batch: Sorted) -> list[tuple[int, str]]:
    """Run the handler on the valid deliveries; returns every (index, reason) to dead-letter.
    A handler's exception propagates: the caller gives the whole batch back to the broker."""
    rejected = list(batch.invalid)
    if batch.deliveries:
        verdicts = handler(batch.deliveries)
        if len(verdicts) != len(batch.deliveries):
            raise BridgeError(f"the handler answered {len(verdicts)} verdicts for {len(batch.deliveries)}")
        for index, verdict in zip(batch.valid_at, verdicts, strict=True):
            if isinstance(verdict, Invalid):
                rejected.append((index, verdict.reason[:300]))
    return sorted(rejected)


class AsyncRunner:
    """An event loop owned by one broker object, so its connection lives on one loop while the
    caller stays synchronous. Not thread-safe: one broker object per thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.close()
