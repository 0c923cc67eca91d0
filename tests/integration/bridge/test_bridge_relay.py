"""The outbox relay on the real brokers: the offset moves only after the broker confirmed the batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from bridge_peers import free_port, nats_stream, rabbit_bind_watch, rabbit_drain

from omnicrm.bridge.base import Broker, NotConfirmed
from omnicrm.bridge.envelope import CloudEvent, from_timeline, parse
from omnicrm.bridge.nats import NatsBroker, NatsConfig
from omnicrm.bridge.rabbitmq import RabbitBroker, RabbitConfig
from omnicrm.bridge.relay import Relay

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REACTIONS = ("sent", "delivered", "opened", "clicked", "bounced")


class Outbox:
    """The timeline's status events and the relay's offset row, as the lead's callables see them."""

    def __init__(self, count: int, tag: str) -> None:
        self.rows = [
            (
                pk,
                from_timeline(
                    {
                        "event_id": f"{tag}-st-{pk}",
                        "customer_id": f"C{pk % 7:05d}",
                        "type": "message.reaction",
                        "channel": "email",
                        "occurred_at": T0 + timedelta(seconds=pk),
                        "attributes": {"message_id": f"M{pk}", "reaction": REACTIONS[pk % 5], "to": "x@y.ua"},
                    }
                ),
            )
            for pk in range(10, 10 + 3 * count, 3)  # pks with gaps, as other events sit between
        ]
        self.offset = 0
        self.saves = 0
        self.fail_next_save = False

    def read_after(self, offset: int, limit: int) -> Sequence[tuple[int, CloudEvent]]:
        return [row for row in self.rows if row[0] > offset][:limit]

    def load_offset(self) -> int:
        return self.offset

    def save_offset(self, pk: int) -> None:
        if self.fail_next_save:
            self.fail_next_save = False
            raise KeyboardInterrupt("the worker died between the publish and the save")
        self.offset, self.saves = pk, self.saves + 1

    def relay(self, broker: Broker, batch: int = 40) -> Relay:
        return Relay(broker, self.read_after, self.load_offset, self.save_offset, batch=batch)


def test_the_offset_stays_while_nats_is_unreachable(jetstream: NatsConfig, tag: str) -> None:
    outbox = Outbox(30, tag)
    broker = NatsBroker(replace(jetstream, servers=(f"nats://127.0.0.1:{free_port()}",), connect_timeout=1.0))
    try:
        with pytest.raises(NotConfirmed, match="unreachable"):
            outbox.relay(broker).run_once()
    finally:
        broker.close()
    assert (outbox.offset, outbox.saves) == (0, 0)


def test_the_offset_stays_when_the_stream_does_not_exist(jetstream: NatsConfig, tag: str) -> None:
    outbox = Outbox(30, tag)
    broker = NatsBroker(replace(jetstream, create_streams=False))
    try:
        with pytest.raises(NotConfirmed):
            outbox.relay(broker).run_once()
    finally:
        broker.close()
    assert (outbox.offset, outbox.saves) == (0, 0)


def test_nats_the_offset_moves_after_confirmation_and_a_crash_republishes_harmlessly(
    jetstream: NatsConfig, tag: str
) -> None:
    outbox = Outbox(100, tag)
    broker = NatsBroker(jetstream)
    try:
        relay = outbox.relay(broker, batch=40)
        assert relay.run_once() == 40
        assert outbox.offset == outbox.rows[39][0]
        outbox.fail_next_save = True
        with pytest.raises(KeyboardInterrupt):
            relay.run_once()  # published 40 more, the offset was not saved
        assert outbox.offset == outbox.rows[39][0]
        assert relay.drain() == 60  # the 40 again (JetStream drops them as duplicates), then 20 new
        assert outbox.offset == outbox.rows[-1][0]
        assert relay.run_once() == 0
    finally:
        broker.close()
    stored = nats_stream(jetstream.servers[0], jetstream.publish_stream)
    assert [parse(body).id for body, _ in stored] == [
        event.id for _, event in outbox.rows
    ]  # once each, in order
    first = parse(stored[0][0])
    assert first.type == f"ua.omnicrm.message.{REACTIONS[10 % 5]}"
    assert first.subject == "C00003"
    assert "to" not in first.data
    assert b"x@y.ua" not in stored[0][0]


def test_rabbitmq_the_offset_stays_until_someone_can_receive_then_moves(
    rabbit: RabbitConfig, tag: str
) -> None:
    outbox = Outbox(50, tag)
    down = RabbitBroker(
        replace(rabbit, url=f"amqp://guest:guest@127.0.0.1:{free_port()}/", connect_timeout=1)
    )
    try:
        with pytest.raises(NotConfirmed, match="unreachable"):
            outbox.relay(down).run_once()
    finally:
        down.close()
    broker = RabbitBroker(rabbit)
    try:
        with pytest.raises(NotConfirmed, match="not confirmed"):  # no queue bound: unroutable
            outbox.relay(broker).run_once()
        assert (outbox.offset, outbox.saves) == (0, 0)
        watch = f"test.watch.{tag}"
        rabbit_bind_watch(rabbit.url, rabbit.publish_exchange, watch)
        assert outbox.relay(broker, batch=20).drain() == 50
    finally:
        broker.close()
    assert outbox.offset == outbox.rows[-1][0]
    received = rabbit_drain(rabbit.url, watch)
    assert [parse(body).id for body, _ in received] == [event.id for _, event in outbox.rows]
