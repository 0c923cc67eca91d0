"""OMNICRM_BRIDGE_NAMES: the bank's own exchange, queue, stream and subject names, checked on load."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from omnicrm.bridge.nats import NatsConfig
from omnicrm.bridge.rabbitmq import RabbitConfig
from omnicrm.cli.bridge import broker_from
from omnicrm.settings import BRIDGE_NAMES, Settings


@pytest.mark.parametrize(("broker", "config"), [("rabbitmq", RabbitConfig), ("nats", NatsConfig)])
def test_every_renamable_name_is_a_text_field_of_the_brokers_config(broker: str, config: type) -> None:
    fields = {f.name: f.type for f in dataclasses.fields(config)}
    assert set(BRIDGE_NAMES[broker]) <= set(fields)
    assert {fields[name] for name in BRIDGE_NAMES[broker]} == {"str"}


def test_the_banks_names_reach_the_broker() -> None:
    settings = Settings(bridge_names={"consume_queue": "crm.events", "dead_letter_queue": "crm.events.dead"})

    broker = broker_from(settings)

    assert broker.config.consume_queue == "crm.events"  # type: ignore[attr-defined]
    assert broker.config.dead_letter_queue == "crm.events.dead"  # type: ignore[attr-defined]
    assert broker.config.publish_exchange == RabbitConfig().publish_exchange  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("broker", "names", "reason"),
    [
        ("rabbitmq", {"consume_stream": "X"}, "not a name rabbitmq takes"),
        ("nats", {"consume_queue": "x"}, "not a name nats takes"),
        ("rabbitmq", {"consume_queue": "two words"}, "no spaces"),
        ("rabbitmq", {"consume_queue": ""}, "printable"),
        ("rabbitmq", {"url": "amqp://elsewhere/"}, "not a name"),
    ],
)
def test_a_name_the_broker_does_not_take_is_refused_on_load(
    broker: str, names: dict[str, str], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(bridge_broker=broker, bridge_names=names)  # type: ignore[arg-type]
