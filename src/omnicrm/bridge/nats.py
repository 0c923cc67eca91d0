"""NATS JetStream behind the bridge's `Broker` interface (nats-py).

Streams, found or created on first use (file storage, a duplicate window):

    bank systems --> <consume_subject> in <consume_stream> --> durable pull consumer <durable>
                                                               (explicit acks, ack_wait)
    invalid / rejected, with the Omnicrm-Reason header --> <dead_letter_subject> in <dead_letter_stream>
    omnicrm status events --> <publish_prefix>.<CloudEvent type> in <publish_stream>

Every publish carries `Nats-Msg-Id` = the CloudEvent id: JetStream stores an id it has seen within
the stream's duplicate window once and answers the repeat with `PubAck.duplicate`, so the relay may
republish a batch after a crash without doubling it. The publish waits for the PubAck of every
message (that is JetStream's confirm: the stream stored it). A dead letter's own message id is the
source's stream sequence, so dead-lettering the same message twice (a crash before its ack) stores
it once too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from omnicrm.bridge.base import AsyncRunner, BrokerUnavailable, Handler, NotConfirmed, judge, sort_bodies
from omnicrm.bridge.envelope import CONTENT_TYPE, CloudEvent

log = logging.getLogger(__name__)
MSG_ID = "Nats-Msg-Id"
REASON_HEADER = "Omnicrm-Reason"
SOURCE_HEADER = "Omnicrm-Source-Subject"
_ERRORS = (OSError, asyncio.TimeoutError, nats.errors.Error)


@dataclass(frozen=True, slots=True)
class NatsConfig:
    """Where and how to reach NATS; the lead wires it from settings."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    publish_stream: str = "OMNICRM_STATUS"
    publish_prefix: str = "omnicrm.status"
    consume_stream: str = "BANK_EVENTS"
    consume_subject: str = "bank.events.>"
    durable: str = "omnicrm"
    dead_letter_stream: str = "OMNICRM_DEAD"
    dead_letter_subject: str = "omnicrm.dead.bank-events"
    duplicate_window: float = 120.0  # seconds; a republish within it is stored once
    ack_wait: float = 60.0  # an unacked message is delivered again after this
    max_ack_pending: int = 1000
    create_streams: bool = True  # False: the streams are the operator's, a missing one is an error
    publish_timeout: float = 10.0
    in_flight: int = 256  # publishes awaiting their PubAck at once
    connect_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Stored:
    """JetStream's acknowledgement of one publish."""

    stream: str
    seq: int
    duplicate: bool


class NatsBroker:
    """Publish to JetStream with message-id dedup; consume a durable pull consumer."""

    def __init__(self, config: NatsConfig) -> None:
        self.config = config
        self._runner = AsyncRunner()
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._ensured: set[str] = set()
        self._subscription: JetStreamContext.PullSubscription | None = None

    # ----------------------------------------------------------------------------------- interface
    def publish(self, events: Sequence[CloudEvent]) -> None:
        self.publish_stored(events)

    def publish_stored(self, events: Sequence[CloudEvent]) -> list[Stored]:
        """Publish and return each PubAck (`duplicate`: the stream had this id already)."""
        if not events:
            return []
        return self._runner.run(self._publish(events))

    def consume(self, handler: Handler, *, batch: int = 100, timeout: float = 1.0) -> int:
        return self._runner.run(self._consume(handler, batch, timeout))

    def close(self) -> None:
        self._runner.run(self._drop())
        self._runner.close()

    # ------------------------------------------------------------------------------------ publish
    async def _publish(self, events: Sequence[CloudEvent]) -> list[Stored]:
        cfg = self.config
        try:
            js = await self._connect()
            await self._ensure(cfg.publish_stream, f"{cfg.publish_prefix}.>")
        except (BrokerUnavailable, *_ERRORS) as exc:
            raise NotConfirmed(f"{len(events)} events not published: {_describe(exc)}") from exc
        gate = asyncio.Semaphore(cfg.in_flight)

        async def one(event: CloudEvent) -> Stored:
            async with gate:
                ack = await js.publish(
                    f"{cfg.publish_prefix}.{event.type}",
                    event.to_json(),
                    timeout=cfg.publish_timeout,
                    stream=cfg.publish_stream,
                    headers={MSG_ID: event.id, "Content-Type": CONTENT_TYPE},
                )
                return Stored(ack.stream, ack.seq, bool(ack.duplicate))

        results = await asyncio.gather(*(one(e) for e in events), return_exceptions=True)
        failed = [r for r in results if not isinstance(r, Stored)]
        if failed:
            raise NotConfirmed(
                f"{len(failed)} of {len(events)} events not stored by JetStream "
                f"(stream {cfg.publish_stream}): {_describe(failed[0])}"
            )
        stored = [r for r in results if isinstance(r, Stored)]
        log.info(
            "bridge: JetStream stored %d events (%d duplicates)",
            len(stored),
            sum(s.duplicate for s in stored),
        )
        return stored

    # ------------------------------------------------------------------------------------ consume
    async def _consume(self, handler: Handler, batch: int, timeout: float) -> int:
        subscription = await self._subscribe()
        try:
            messages = await subscription.fetch(batch, timeout=timeout)
        except nats.errors.TimeoutError:
            return 0
        except _ERRORS as exc:
            await self._drop()
            raise BrokerUnavailable(f"NATS: fetching failed: {_describe(exc)}") from exc
        fetched = sort_bodies([(m.data, m.metadata.num_delivered > 1) for m in messages])
        try:
            rejected = await asyncio.to_thread(judge, handler, fetched)
        except BaseException:
            await self._give_back(messages)
            raise
        try:
            await self._dead_letter([(messages[i], reason) for i, reason in rejected])
            for message in messages:
                await message.ack()
            assert self._client is not None
            await self._client.flush(timeout=int(self.config.publish_timeout))
        except (NotConfirmed, *_ERRORS) as exc:
            # Unacked messages come back after ack_wait; a dead letter stored twice is deduplicated.
            await self._give_back(messages)
            raise BrokerUnavailable(
                f"NATS: settling {len(messages)} messages failed: {_describe(exc)}"
            ) from exc
        if rejected:
            log.warning("bridge: %d of %d messages dead-lettered", len(rejected), len(messages))
        return len(messages)

    async def _dead_letter(self, rejected: list[tuple[Msg, str]]) -> None:
        cfg = self.config
        if not rejected:
            return
        await self._ensure(cfg.dead_letter_stream, cfg.dead_letter_subject)
        assert self._js is not None
        for message, reason in rejected:
            meta = message.metadata
            await self._js.publish(
                cfg.dead_letter_subject,
                message.data,
                timeout=cfg.publish_timeout,
                stream=cfg.dead_letter_stream,
                headers={
                    MSG_ID: f"{meta.stream}:{meta.sequence.stream}",
                    REASON_HEADER: reason.replace("\r", " ").replace("\n", " "),
                    SOURCE_HEADER: message.subject,
                },
            )

    async def _give_back(self, messages: list[Msg]) -> None:
        """Ask for a redelivery now (nak); if that fails too, ack_wait brings them back later."""
        try:
            for message in messages:
                await message.nak()
            if self._client is not None:
                await self._client.flush(timeout=int(self.config.publish_timeout))
        except _ERRORS as exc:
            log.warning("bridge: NATS nak failed (%s); redelivery after ack_wait", type(exc).__name__)

    # --------------------------------------------------------------------------------- connection
    async def _connect(self) -> JetStreamContext:
        if self._js is not None and self._client is not None and self._client.is_connected:
            return self._js
        await self._drop()

        async def quiet(exc: Exception) -> None:
            log.debug("bridge: NATS: %s", type(exc).__name__)

        try:
            client = await asyncio.wait_for(
                nats.connect(
                    list(self.config.servers),
                    error_cb=quiet,
                    connect_timeout=self.config.connect_timeout,
                    max_reconnect_attempts=-1,
                ),
                timeout=self.config.connect_timeout,
            )
        except (*_ERRORS, TimeoutError) as exc:
            raise BrokerUnavailable(f"NATS unreachable: {_describe(exc)}") from exc
        self._client, self._js = client, client.jetstream(timeout=self.config.publish_timeout)
        return self._js

    async def _ensure(self, stream: str, subject: str) -> None:
        """Find the stream, or create it when that is ours to do."""
        if stream in self._ensured:
            return
        js = await self._connect()
        try:
            await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            if not self.config.create_streams:
                raise
            await js.add_stream(
                StreamConfig(
                    name=stream,
                    subjects=[subject],
                    storage=StorageType.FILE,
                    duplicate_window=self.config.duplicate_window,
                )
            )
        self._ensured.add(stream)

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        if self._subscription is not None and self._client is not None and self._client.is_connected:
            return self._subscription
        cfg = self.config
        try:
            js = await self._connect()
            await self._ensure(cfg.consume_stream, cfg.consume_subject)
            self._subscription = await js.pull_subscribe(
                cfg.consume_subject,
                durable=cfg.durable,
                stream=cfg.consume_stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=cfg.ack_wait,
                    max_ack_pending=cfg.max_ack_pending,
                ),
            )
        except _ERRORS as exc:
            await self._drop()
            raise BrokerUnavailable(f"NATS: subscribing failed: {_describe(exc)}") from exc
        return self._subscription

    async def _drop(self) -> None:
        client = self._client
        self._client = self._js = self._subscription = None
        self._ensured.clear()
        if client is not None and not client.is_closed:
            try:
                await client.close()
            except _ERRORS as exc:
                log.debug("bridge: closing a broken NATS connection: %s", type(exc).__name__)


def _describe(exc: object) -> str:
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}"[:200]
    return f"unexpected answer {type(exc).__name__}"
