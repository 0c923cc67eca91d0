"""`omnicrm bridge`: the broker bridge - bank events in from RabbitMQ or NATS JetStream, status
events out to it (docs/broker-bridge.md). One process per database is enough; a second one is
harmless (deliveries are deduplicated by event id, the relay's offset only moves forward)."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import replace
from functools import partial
from typing import Any

from omnicrm.bridge.base import BridgeError, Broker
from omnicrm.bridge.relay import Relay
from omnicrm.cli.common import console, open_container
from omnicrm.services.intake import bridging
from omnicrm.settings import Settings

log = logging.getLogger(__name__)


def broker_from(settings: Settings) -> Broker:
    """The configured broker, with the bank's names (OMNICRM_BRIDGE_NAMES, checked by Settings); its
    client library is imported only here, so other commands start fast."""
    names: dict[str, Any] = dict(settings.bridge_names)  # str fields only (Settings checked them)
    if settings.bridge_broker == "nats":
        from omnicrm.bridge.nats import NatsBroker, NatsConfig

        return NatsBroker(replace(NatsConfig(servers=(settings.nats_url,)), **names))
    from omnicrm.bridge.rabbitmq import RabbitBroker, RabbitConfig

    rabbit = RabbitConfig(url=settings.amqp_url.get_secret_value())
    return RabbitBroker(replace(rabbit, **names))


def bridge_command() -> None:
    """Run the broker bridge until interrupted: bank events in, message statuses out."""
    container = open_container()
    settings = container.settings
    broker = broker_from(settings)
    relay = Relay(
        broker,
        partial(bridging.status_events_after, container),
        partial(bridging.relay_offset, container),
        partial(bridging.save_relay_offset, container),
    )
    handler = partial(bridging.take_deliveries, container, type_prefix=settings.bridge_type_prefix)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    console.print(f"broker bridge running on {settings.bridge_broker}; Ctrl-C stops it")
    pause = 1.0
    try:
        while not stopping.is_set():
            try:
                relay.drain(limit=5000)
                broker.consume(handler, batch=500, timeout=1.0)
                pause = 1.0
            except BridgeError as exc:  # unreachable or unconfirmed: nothing moved, try again later
                log.warning("bridge: %s; again in %.0f s", exc, pause)
                stopping.wait(pause)
                pause = min(pause * 2, 30.0)
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        broker.close()
        container.close()
