"""The bridge on the real RabbitMQ: quorum queue, publisher confirms, manual acks, dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest
from bridge_peers import (
    bank_events,
    rabbit_count,
    rabbit_drain,
    rabbit_kill_connection,
    rabbit_publish_raw,
)

from omnicrm.bridge.base import DONE, BrokerUnavailable, Delivery, Invalid, NotConfirmed, Verdict
from omnicrm.bridge.envelope import parse
from omnicrm.bridge.rabbitmq import REASON_HEADER, RabbitBroker, RabbitConfig


class Collector:
    """A handler that records what it was given; `fail_first` raises on its first call."""

    def __init__(self, *, fail_first: bool = False, refuse: frozenset[str] = frozenset()) -> None:
        self.seen: list[Delivery] = []
        self.calls = 0
        self.fail_first = fail_first
        self.refuse = refuse

    def __call__(self, deliveries: list[Delivery]) -> list[Verdict]:
        self.calls += 1
        if self.fail_first and self.calls == 1:
            raise RuntimeError("the database is down")
        self.seen.extend(deliveries)
        return [
            Invalid("type: not in the catalogue") if d.event.id in self.refuse else DONE for d in deliveries
        ]

    @property
    def ids(self) -> list[str]:
        return [d.event.id for d in self.seen]


def drain(broker: RabbitBroker, handler: Collector, want: int, *, batch: int = 100) -> int:
    """Consume until `want` messages were settled (acked or dead-lettered), or three empty waits."""
    settled, empty = 0, 0
    while settled < want and empty < 3:
        got = broker.consume(handler, batch=batch, timeout=2.0)
        settled += got
        empty = 0 if got else empty + 1
    return settled


@pytest.fixture
def omnicrm_side(rabbit: RabbitConfig) -> Iterator[RabbitBroker]:
    broker = RabbitBroker(rabbit)
    broker.declare()  # the queue exists (and is bound) before the bank publishes
    yield broker
    broker.close()


@pytest.fixture
def bank_side(bank_rabbit: RabbitConfig) -> Iterator[RabbitBroker]:
    broker = RabbitBroker(bank_rabbit)
    yield broker
    broker.close()


def test_a_thousand_events_are_consumed_exactly_once(
    omnicrm_side: RabbitBroker, bank_side: RabbitBroker, rabbit: RabbitConfig, tag: str
) -> None:
    events = bank_events(1000, tag)
    bank_side.publish(events)
    assert rabbit_count(rabbit.url, rabbit.consume_queue) == 1000  # confirmed means stored
    handler = Collector()
    assert drain(omnicrm_side, handler, 1000, batch=200) == 1000
    assert sorted(handler.ids) == sorted(e.id for e in events)
    assert len(set(handler.ids)) == 1000
    assert handler.seen[0].event == events[0]  # the envelope arrives whole
    assert omnicrm_side.consume(handler, batch=200, timeout=0.5) == 0
    assert rabbit_count(rabbit.url, rabbit.consume_queue) == 0


def test_a_handler_exception_leaves_the_batch_to_be_delivered_again(
    omnicrm_side: RabbitBroker, bank_side: RabbitBroker, tag: str
) -> None:
    events = bank_events(20, tag)
    bank_side.publish(events)
    handler = Collector(fail_first=True)
    with pytest.raises(RuntimeError, match="database is down"):
        omnicrm_side.consume(handler, batch=50, timeout=5.0)
    assert handler.seen == []
    drain(omnicrm_side, handler, 20, batch=50)
    assert sorted(handler.ids) == sorted(e.id for e in events)
    assert any(d.redelivered for d in handler.seen)


def test_invalid_messages_go_to_the_dead_letter_queue_with_their_reason(
    omnicrm_side: RabbitBroker, bank_side: RabbitBroker, rabbit: RabbitConfig, tag: str
) -> None:
    good = bank_events(10, tag)
    bad_envelope = orjson.dumps({"specversion": "0.3", "id": "x", "source": "/b", "type": "t"})
    rabbit_publish_raw(rabbit.url, rabbit.consume_exchange, [b"not json at all", bad_envelope])
    bank_side.publish(good)
    handler = Collector(refuse=frozenset({good[3].id}))
    assert drain(omnicrm_side, handler, 12) == 12
    assert sorted(handler.ids) == sorted(e.id for e in good)  # the rest were processed
    dead = rabbit_drain(rabbit.url, rabbit.dead_letter_queue)
    reasons = sorted(str(headers[REASON_HEADER]) for _, headers in dead)
    assert len(dead) == 3
    assert any(r.startswith("not JSON") for r in reasons)
    assert any("specversion" in r for r in reasons)
    assert "type: not in the catalogue" in reasons
    (refused,) = [body for body, headers in dead if headers[REASON_HEADER] == "type: not in the catalogue"]
    assert parse(refused).id == good[3].id  # the message itself is kept, to be looked at or replayed
    assert rabbit_count(rabbit.url, rabbit.consume_queue) == 0  # acked on the source, not requeued


def test_a_connection_killed_mid_consume_loses_nothing(
    omnicrm_side: RabbitBroker, bank_side: RabbitBroker, rabbit: RabbitConfig, tag: str
) -> None:
    events = bank_events(300, tag)
    bank_side.publish(events)
    handled: list[list[str]] = []

    def kill_during_first_batch(deliveries: list[Delivery]) -> list[Verdict]:
        handled.append([d.event.id for d in deliveries])
        if len(handled) == 1:
            assert rabbit_kill_connection(rabbit.connection_name) == 1
        return [DONE] * len(deliveries)

    with pytest.raises(BrokerUnavailable):
        omnicrm_side.consume(kill_during_first_batch, batch=100, timeout=5.0)
    first = set(handled[0])
    assert first  # a batch was handed over, then its acks could not reach the broker
    handler = Collector()
    drain(omnicrm_side, handler, 300, batch=100)  # reconnects by itself
    assert set(handler.ids) == {e.id for e in events}  # nothing lost
    assert first <= set(handler.ids)  # the killed batch was never acked: it came back
    assert all(d.redelivered for d in handler.seen if d.event.id in first)
    assert rabbit_count(rabbit.url, rabbit.consume_queue) == 0


def test_a_publish_nobody_can_receive_is_not_confirmed(rabbit: RabbitConfig, tag: str) -> None:
    broker = RabbitBroker(rabbit)  # publish exchange declared, but no queue bound to it
    try:
        with pytest.raises(NotConfirmed, match="not confirmed"):
            broker.publish(bank_events(3, tag))
    finally:
        broker.close()


def test_a_message_that_always_crashes_the_handler_ends_in_the_dead_letter_queue(
    rabbit: RabbitConfig, bank_side: RabbitBroker, tag: str
) -> None:
    broker = RabbitBroker(replace(rabbit, delivery_limit=2))
    try:
        broker.declare()
        (poison,) = bank_events(1, tag)
        bank_side.publish([poison])
        crashes = 0

        def crash(deliveries: list[Delivery]) -> list[Verdict]:
            raise ValueError("a defect this event triggers")

        for _ in range(10):
            try:
                if broker.consume(crash, batch=1, timeout=1.0) == 0:
                    break
            except ValueError:
                crashes += 1
    finally:
        broker.close()
    assert crashes == 3  # the first delivery and two more, then the quorum queue gives up on it
    (dead,) = rabbit_drain(rabbit.url, rabbit.dead_letter_queue)
    assert parse(dead[0]).id == poison.id
    assert dead[1]["x-death"][0]["reason"] == "delivery_limit"
    assert rabbit_count(rabbit.url, rabbit.consume_queue) == 0
