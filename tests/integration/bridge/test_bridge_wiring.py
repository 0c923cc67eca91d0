"""The bridge wired to omnicrm (services/intake/bridging.py), on the real RabbitMQ and both databases: a
bank's CloudEvents land on the timeline once (a redelivery is a duplicate), a refused one is
dead-lettered with its reason while the rest are stored, and the timeline's message statuses go out
to the broker, the relay's offset moving only after the broker confirmed them."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import orjson
import pytest
from bridge_peers import bank_events, rabbit_bind_watch, rabbit_drain
from sqlalchemy import func, select

from omnicrm.bootstrap import Container
from omnicrm.bridge.rabbitmq import RabbitBroker, RabbitConfig
from omnicrm.bridge.relay import Relay
from omnicrm.services.intake import bridging
from omnicrm.store import timeline
from omnicrm.store.tables import events


def _stored(container: Container, prefix: str) -> int:
    with container.reader() as conn:
        query = select(func.count()).where(events.c.event_id.like(f"{prefix}%"))
        return int(conn.execute(query).scalar_one())


def test_bank_events_from_rabbitmq_are_stored_once_and_refused_ones_dead_lettered(
    container: Container, rabbit: RabbitConfig, bank_rabbit: RabbitConfig, tag: str
) -> None:
    bank = RabbitBroker(bank_rabbit)
    omnicrm = RabbitBroker(rabbit)
    omnicrm.declare()
    good = bank_events(20, tag)
    bad = bank_events(1, f"{tag}-bad")[0].model_copy(update={"type": "ua.bank.teleport.started"})
    try:
        bank.publish([*good, bad, good[0]])  # the first one twice: a redelivery
        handler = partial(bridging.take_deliveries, container, type_prefix="ua.bank.")
        taken = 0
        for _ in range(20):
            taken += omnicrm.consume(handler, batch=100, timeout=0.5)
            if taken >= 22:
                break
    finally:
        bank.close()
        omnicrm.close()

    assert _stored(container, tag) == 20
    dead = rabbit_drain(rabbit.url, rabbit.dead_letter_queue)
    assert len(dead) == 1
    body, headers = dead[0]
    assert b"teleport.started" in body
    assert "unknown" in str(headers).lower()


def test_message_statuses_go_out_and_the_offset_moves_after_confirmation(
    container: Container, rabbit: RabbitConfig, tag: str
) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "event_id": f"status-{tag}-{n}",
            "customer_id": None,
            "origin_id": None,
            "kind": "interaction",
            "type": "crm.message.status",
            "source": "channel",
            "channel": "email",
            "occurred_at": now,
            "attributes": {"message_id": f"m-{n}", "status": "sent", "provider": "smtp"},
        }
        for n in range(5)
    ]
    with container.uow() as uow:
        from omnicrm.bench.outbox_seed import people

        [cid] = people(uow.conn, 1, now=now, zone="Etc/GMT", prefix=tag)
        for row in rows:
            row["customer_id"] = row["origin_id"] = cid
        timeline.insert_events(uow.conn, rows, received_at=now)
        uow.commit()
    rabbit_bind_watch(rabbit.url, rabbit.publish_exchange, f"test.watch.{tag}")
    broker = RabbitBroker(rabbit)
    relay = Relay(
        broker,
        partial(bridging.status_events_after, container),
        partial(bridging.relay_offset, container),
        partial(bridging.save_relay_offset, container),
    )
    try:
        assert relay.drain() == 5
        assert relay.drain() == 0  # the offset moved: nothing is published twice
    finally:
        broker.close()
    out = rabbit_drain(rabbit.url, f"test.watch.{tag}")
    bodies = [orjson.loads(body) for body, _ in out]
    assert sorted(b["id"] for b in bodies) == sorted(r["event_id"] for r in rows)
    assert {b["type"] for b in bodies} == {"ua.omnicrm.message.sent"}
    assert {b["subject"] for b in bodies} == {cid}


_ = pytest
