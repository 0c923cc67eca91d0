"""The bridge on the real NATS JetStream: Nats-Msg-Id dedup, pull consumer, explicit acks, dead letters."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from bridge_peers import bank_events, nats_publish_raw, nats_stream, nats_stream_count

from omnicrm.bridge.base import DONE, Delivery, Invalid, Verdict
from omnicrm.bridge.envelope import parse
from omnicrm.bridge.nats import MSG_ID, REASON_HEADER, NatsBroker, NatsConfig


class Collector:
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


def drain(broker: NatsBroker, handler: Collector, want: int, *, batch: int = 100) -> int:
    settled, empty = 0, 0
    while settled < want and empty < 3:
        got = broker.consume(handler, batch=batch, timeout=1.0)
        settled += got
        empty = 0 if got else empty + 1
    return settled


@pytest.fixture
def omnicrm_side(jetstream: NatsConfig) -> Iterator[NatsBroker]:
    broker = NatsBroker(jetstream)
    yield broker
    broker.close()


@pytest.fixture
def bank_side(bank_jetstream: NatsConfig) -> Iterator[NatsBroker]:
    broker = NatsBroker(bank_jetstream)
    yield broker
    broker.close()


def test_a_thousand_events_are_consumed_exactly_once(
    omnicrm_side: NatsBroker, bank_side: NatsBroker, jetstream: NatsConfig, tag: str
) -> None:
    events = bank_events(1000, tag)
    stored = bank_side.publish_stored(events)
    assert len(stored) == 1000
    assert not any(s.duplicate for s in stored)
    assert nats_stream_count(jetstream.servers[0], jetstream.consume_stream) == 1000
    handler = Collector()
    assert drain(omnicrm_side, handler, 1000, batch=250) == 1000
    assert sorted(handler.ids) == sorted(e.id for e in events)
    assert len(set(handler.ids)) == 1000
    assert handler.seen[0].event == events[0]
    assert omnicrm_side.consume(handler, batch=250, timeout=0.5) == 0  # all acked: nothing comes back


def test_publishing_one_id_twice_stores_it_once(
    bank_side: NatsBroker, jetstream: NatsConfig, tag: str
) -> None:
    (event,) = bank_events(1, tag)
    first, again = bank_side.publish_stored([event]), bank_side.publish_stored([event])
    assert (first[0].duplicate, again[0].duplicate) == (False, True)
    assert again[0].seq == first[0].seq
    stored = nats_stream(jetstream.servers[0], jetstream.consume_stream)
    assert len(stored) == 1
    assert stored[0][1][MSG_ID] == event.id


def test_a_handler_exception_leaves_the_batch_to_be_delivered_again(
    omnicrm_side: NatsBroker, bank_side: NatsBroker, tag: str
) -> None:
    events = bank_events(20, tag)
    bank_side.publish(events)
    handler = Collector(fail_first=True)
    with pytest.raises(RuntimeError, match="database is down"):
        omnicrm_side.consume(handler, batch=50, timeout=2.0)
    assert handler.seen == []
    drain(omnicrm_side, handler, 20, batch=50)
    assert sorted(handler.ids) == sorted(e.id for e in events)
    assert all(d.redelivered for d in handler.seen)


def test_invalid_messages_go_to_the_dead_letter_stream_with_their_reason(
    omnicrm_side: NatsBroker, bank_side: NatsBroker, jetstream: NatsConfig, tag: str
) -> None:
    good = bank_events(10, tag)
    bank_side.publish(good)  # creates the stream the raw messages go to
    bad_envelope = orjson.dumps({"specversion": "1.0", "id": "", "source": "/b", "type": "t"})
    nats_publish_raw(jetstream.servers[0], f"test.bank.{tag}.raw", [b"\x00\x01 binary", bad_envelope])
    handler = Collector(refuse=frozenset({good[7].id}))
    assert drain(omnicrm_side, handler, 12) == 12
    assert sorted(handler.ids) == sorted(e.id for e in good)
    dead = nats_stream(jetstream.servers[0], jetstream.dead_letter_stream)
    reasons = sorted(headers[REASON_HEADER] for _, headers in dead)
    assert len(dead) == 3
    assert any(r.startswith("not JSON") for r in reasons)
    assert any(r.startswith("id:") for r in reasons)
    (refused,) = [body for body, headers in dead if headers[REASON_HEADER] == "type: not in the catalogue"]
    assert parse(refused).id == good[7].id
    assert omnicrm_side.consume(handler, batch=50, timeout=0.5) == 0  # acked on the source
