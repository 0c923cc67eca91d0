"""RabbitMQ behind the bridge's `Broker` interface (aio-pika, AMQP 0-9-1).

Topology, declared idempotently on first use:

    bank systems --> <consume_exchange> (topic) --#--> <consume_queue> (quorum, durable)
                                                          | x-delivery-limit exceeded
    invalid / rejected, with x-omnicrm-reason ----------> <dead_letter_exchange> (direct)
                                                          --> <dead_letter_queue> (quorum)
    omnicrm status events --> <publish_exchange> (topic), routing key = CloudEvent type

Why these choices: a quorum queue is replicated and fsyncs before it confirms, so a confirmed event
survives a broker node's crash (a classic mirrored queue does not promise that). Publisher confirms
with `mandatory` make "published" mean "stored in at least one queue": a status event published
while nobody is bound is refused, not dropped. Messages are persistent, acks manual and after the
handler, and the prefetch bounds what one consumer holds unacked. The quorum queue's delivery limit
sends a message that crashes the handler again and again (a poison message) to the dead-letter
queue instead of redelivering it forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from omnicrm.bridge.base import (
    AsyncRunner,
    BridgeError,
    BrokerUnavailable,
    Handler,
    NotConfirmed,
    judge,
    sort_bodies,
)
from omnicrm.bridge.envelope import CONTENT_TYPE, CloudEvent, routing_key

log = logging.getLogger(__name__)
REASON_HEADER = "x-omnicrm-reason"
SOURCE_HEADER = "x-omnicrm-source"
# Failures of the connection or of one publish; anything else is a defect and propagates.
_BROKER_ERRORS = (OSError, asyncio.TimeoutError, aiormq.exceptions.AMQPError, RuntimeError)


@dataclass(frozen=True, slots=True)
class RabbitConfig:
    """Where and how to reach RabbitMQ; the lead wires it from settings."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    publish_exchange: str = "omnicrm.status"
    consume_exchange: str = "bank.events"
    consume_queue: str = "omnicrm.bank-events"
    binding_key: str = "#"
    dead_letter_exchange: str = "omnicrm.dead"
    dead_letter_queue: str = "omnicrm.bank-events.dead"
    prefetch: int = 500
    delivery_limit: int = 20
    confirm_timeout: float = 30.0
    connect_timeout: float = 5.0
    mandatory: bool = True
    connection_name: str = "omnicrm-bridge"  # shown by `rabbitmqctl list_connections`


class RabbitBroker:
    """Publish with confirms to a topic exchange; consume a quorum queue with manual acks."""

    def __init__(self, config: RabbitConfig) -> None:
        self.config = config
        self._runner = AsyncRunner()
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._publish_to: AbstractExchange | None = None
        self._dead: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage] | None = None

    # ----------------------------------------------------------------------------------- interface
    def publish(self, events: Sequence[CloudEvent]) -> None:
        if events:
            self._runner.run(self._publish(events))

    def consume(self, handler: Handler, *, batch: int = 100, timeout: float = 1.0) -> int:
        return self._runner.run(self._consume(handler, batch, timeout))

    def close(self) -> None:
        self._runner.run(self._drop())
        self._runner.close()

    def declare(self) -> None:
        """Declare the whole topology now (an operator's `omnicrm bridge --declare`, the tests)."""
        self._runner.run(self._declare_all())

    # ------------------------------------------------------------------------------------ publish
    async def _publish(self, events: Sequence[CloudEvent]) -> None:
        try:
            exchange = await self._publish_exchange()
        except BrokerUnavailable as exc:
            raise NotConfirmed(f"{len(events)} events not published: {exc}") from exc
        results = await asyncio.gather(
            *(
                exchange.publish(
                    _message(event),
                    routing_key=routing_key(event),
                    mandatory=self.config.mandatory,
                    timeout=self.config.confirm_timeout,
                )
                for event in events
            ),
            return_exceptions=True,
        )
        failed = [r for r in results if not isinstance(r, aiormq.spec.Basic.Ack)]
        if failed:
            first = failed[0]
            if isinstance(first, _BROKER_ERRORS) and self._connection_lost():
                await self._drop()
            raise NotConfirmed(
                f"{len(failed)} of {len(events)} events not confirmed by RabbitMQ "
                f"(exchange {self.config.publish_exchange}): {_describe(first)}"
            )
        log.info("bridge: RabbitMQ confirmed %d events", len(events))

    # ------------------------------------------------------------------------------------ consume
    async def _consume(self, handler: Handler, batch: int, timeout: float) -> int:
        inbox = await self._consuming()
        try:
            first = await asyncio.wait_for(inbox.get(), timeout)
        except TimeoutError:
            if self._connection_lost():
                await self._drop()
                raise BrokerUnavailable("the RabbitMQ connection closed while waiting") from None
            return 0
        messages = [first]
        while len(messages) < batch and not inbox.empty():
            messages.append(inbox.get_nowait())
        fetched = sort_bodies([(m.body, bool(m.redelivered)) for m in messages])
        try:
            rejected = await asyncio.to_thread(judge, handler, fetched)
        except BaseException:
            await self._give_back(messages)
            raise
        try:
            await self._dead_letter([(messages[i], reason) for i, reason in rejected])
            await asyncio.gather(*(m.ack() for m in messages))
        except _BROKER_ERRORS as exc:
            # Nothing is lost: what was not acked stays with the broker and comes back.
            await self._drop()
            reason = f"RabbitMQ: settling {len(messages)} messages failed: {_describe(exc)}"
            raise BrokerUnavailable(reason) from exc
        if rejected:
            log.warning("bridge: %d of %d messages dead-lettered", len(rejected), len(messages))
        return len(messages)

    async def _dead_letter(self, rejected: list[tuple[AbstractIncomingMessage, str]]) -> None:
        """Publish each rejected message, with its reason, to the dead-letter exchange and wait for
        the confirms; only then is the source acked (a failure here raises before any ack)."""
        if not rejected:
            return
        assert self._dead is not None
        results = await asyncio.gather(
            *(
                self._dead.publish(
                    aio_pika.Message(
                        body=m.body,
                        content_type=m.content_type,
                        message_id=m.message_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers={**(m.headers or {}), REASON_HEADER: reason, SOURCE_HEADER: m.routing_key},
                    ),
                    routing_key=self.config.consume_queue,
                    mandatory=True,
                    timeout=self.config.confirm_timeout,
                )
                for m, reason in rejected
            ),
            return_exceptions=True,
        )
        failed = [r for r in results if not isinstance(r, aiormq.spec.Basic.Ack)]
        if failed:
            raise BridgeError(f"{len(failed)} dead letters not confirmed: {_describe(failed[0])}")

    async def _give_back(self, messages: list[AbstractIncomingMessage]) -> None:
        """Requeue a batch whose handler raised; if the connection is gone the broker does it."""
        try:
            await asyncio.gather(*(m.nack(requeue=True) for m in messages))
        except _BROKER_ERRORS:
            await self._drop()

    # --------------------------------------------------------------------------------- connection
    async def _connect(self) -> AbstractChannel:
        if self._channel is not None and not self._connection_lost():
            return self._channel
        await self._drop()
        try:
            connection = await aio_pika.connect(
                self.config.url,
                timeout=self.config.connect_timeout,
                client_properties={"connection_name": self.config.connection_name},
            )
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"RabbitMQ unreachable: {_describe(exc)}") from exc
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.config.prefetch)
        self._connection, self._channel = connection, channel
        return channel

    async def _publish_exchange(self) -> AbstractExchange:
        channel = await self._connect()
        if self._publish_to is None:
            self._publish_to = await channel.declare_exchange(
                self.config.publish_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
        return self._publish_to

    async def _consuming(self) -> asyncio.Queue[AbstractIncomingMessage]:
        """The local buffer a running consumer fills (at most `prefetch` unacked messages)."""
        channel = await self._connect()
        if self._inbox is None:
            try:
                queue = await self._declare_inbound(channel)
                inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
                await queue.consume(inbox.put, no_ack=False)
            except _BROKER_ERRORS as exc:
                await self._drop()
                raise BrokerUnavailable(f"RabbitMQ: consuming failed: {_describe(exc)}") from exc
            self._queue, self._inbox = queue, inbox
        return self._inbox

    async def _declare_inbound(self, channel: AbstractChannel) -> AbstractQueue:
        cfg = self.config
        self._dead = await channel.declare_exchange(
            cfg.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dead_queue = await channel.declare_queue(
            cfg.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead_queue.bind(self._dead, routing_key=cfg.consume_queue)
        source = await channel.declare_exchange(
            cfg.consume_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            cfg.consume_queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": cfg.delivery_limit,
                "x-dead-letter-exchange": cfg.dead_letter_exchange,
                "x-dead-letter-routing-key": cfg.consume_queue,
            },
        )
        await queue.bind(source, routing_key=cfg.binding_key)
        return queue

    async def _declare_all(self) -> None:
        await self._publish_exchange()
        await self._declare_inbound(await self._connect())

    def _connection_lost(self) -> bool:
        return (
            self._connection is None
            or self._connection.is_closed
            or bool(self._channel is not None and self._channel.is_closed)
        )

    async def _drop(self) -> None:
        """Forget the connection and everything bound to it; buffered messages die with it and the
        broker delivers them again."""
        connection = self._connection
        self._connection = self._channel = None
        self._publish_to = self._dead = self._queue = None
        self._inbox = None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except _BROKER_ERRORS as exc:
                log.debug("bridge: closing a broken RabbitMQ connection: %s", type(exc).__name__)


def _message(event: CloudEvent) -> aio_pika.Message:
    return aio_pika.Message(
        body=event.to_json(),
        content_type=CONTENT_TYPE,
        message_id=event.id,
        type=event.type,
        timestamp=event.time,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _describe(exc: object) -> str:
    """A short, value-free description of a publish outcome that was not an ack."""
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}"[:200]
    return f"unexpected confirmation {type(exc).__name__}"
