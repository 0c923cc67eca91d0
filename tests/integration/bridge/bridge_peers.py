"""Direct access to the brokers, beside the bridge: the tests look at what really reached a queue or
a stream with the client libraries themselves, not through the code under test."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import Sequence
from typing import Any

import aio_pika
import nats
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from omnicrm.bridge.envelope import CloudEvent, from_event_json

Raw = tuple[bytes, dict[str, Any]]


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rabbit_reachable(url: str) -> bool:
    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception:
        return False
    return True


def rabbit_publish_raw(url: str, exchange: str, bodies: Sequence[bytes], routing_key: str = "raw") -> None:
    """Publish bodies as they are (no envelope check), with confirms."""

    async def run() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            target = await channel.get_exchange(exchange)
            for body in bodies:
                await target.publish(aio_pika.Message(body, delivery_mode=2), routing_key=routing_key)

    asyncio.run(run())


def rabbit_drain(url: str, queue: str, *, wait: float = 5.0) -> list[Raw]:
    """Take (and ack) every message of a queue: body and headers."""

    async def run() -> list[Raw]:
        connection = await aio_pika.connect(url)
        out: list[Raw] = []
        async with connection:
            channel = await connection.channel()
            source = await channel.get_queue(queue)
            deadline = asyncio.get_running_loop().time() + wait
            while True:
                message = await source.get(no_ack=False, fail=False)
                if message is None:
                    if out or asyncio.get_running_loop().time() > deadline:
                        return out
                    await asyncio.sleep(0.05)
                    continue
                out.append((message.body, dict(message.headers or {})))
                await message.ack()

    return asyncio.run(run())


def rabbit_count(url: str, queue: str) -> int:
    """Messages ready in a queue (passive declare)."""

    async def run() -> int:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)

    return asyncio.run(run())


def rabbit_bind_watch(url: str, exchange: str, queue: str) -> None:
    """A queue bound to everything on a topic exchange (a status subscriber)."""

    async def run() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            x = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            q = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
            await q.bind(x, routing_key="#")

    asyncio.run(run())


def rabbit_delete(url: str, *, queues: Sequence[str], exchanges: Sequence[str]) -> None:
    async def run() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            for name in queues:
                channel = await connection.channel()
                await channel.queue_delete(name)
            for name in exchanges:
                channel = await connection.channel()
                await channel.exchange_delete(name)

    asyncio.run(run())


def rabbit_kill_connection(connection_name: str) -> int:
    """Close, on the server, every connection of that name (as an operator or a network failure
    would); returns how many were closed."""
    listed = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        capture_output=True,
        text=True,
        check=True,
    )
    killed = 0
    marker = f'{{"connection_name","{connection_name}"}}'
    for line in listed.stdout.splitlines():
        pid, _, properties = line.partition("\t")
        if marker in properties:
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, "killed by a bridge test", "-q"],
                check=True,
                capture_output=True,
            )
            killed += 1
    return killed


def nats_reachable(url: str) -> bool:
    async def probe() -> None:
        client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
        await client.close()

    try:
        asyncio.run(probe())
    except Exception:
        return False
    return True


def nats_stream(url: str, stream: str) -> list[Raw]:
    """Every message stored in a stream, in order, with its headers (an ephemeral consumer)."""

    async def run() -> list[Raw]:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            info = await js.stream_info(stream)
            total = info.state.messages
            out: list[Raw] = []
            if not total:
                return out
            subject = info.config.subjects[0] if info.config.subjects else ">"
            sub = await js.pull_subscribe(
                subject,
                stream=stream,
                config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
            )
            while len(out) < total:
                for msg in await sub.fetch(min(500, total - len(out)), timeout=5):
                    out.append((msg.data, dict(msg.headers or {})))
            await sub.unsubscribe()
            return out
        finally:
            await client.close()

    return asyncio.run(run())


def nats_stream_count(url: str, stream: str) -> int:
    async def run() -> int:
        client = await nats.connect(url)
        try:
            return int((await client.jetstream().stream_info(stream)).state.messages)
        finally:
            await client.close()

    return asyncio.run(run())


def nats_publish_raw(url: str, subject: str, bodies: Sequence[bytes]) -> None:
    async def run() -> None:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            for body in bodies:
                await js.publish(subject, body)
        finally:
            await client.close()

    asyncio.run(run())


def nats_delete_streams(url: str, streams: Sequence[str]) -> None:
    async def run() -> None:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            for name in streams:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(name)
        finally:
            await client.close()

    asyncio.run(run())


# ------------------------------------------------------------------------------- events and handlers
def bank_events(count: int, tag: str, *, start: int = 0) -> list[CloudEvent]:
    """`count` core-banking events as a bank system would publish them."""
    return [
        from_event_json(
            {
                "event_id": f"{tag}-{i:05d}",
                "type": "product.opened",
                "occurred_at": "2026-11-30T09:00:00+02:00",
                "identifiers": {"cbs_id": f"CB{i:07d}"},
                "attributes": {"product_class": "deposit", "contract_number": f"D-{i}"},
            },
            source_uri="/core-banking",
            type_prefix="ua.bank.",
        )
        for i in range(start, start + count)
    ]
