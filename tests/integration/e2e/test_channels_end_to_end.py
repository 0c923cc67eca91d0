"""The loop closed, as shipped (issue 19): `omnicrm serve` on the embedded default (SQLite) with its
decision and dispatch workers, a real SMTP server and a real Kannel (bearerbox, smsbox, fakesmsc).

A bank's system posts clients and events over HTTP; the shipped scenarios' messages leave through
the channels and reach the peers (an SMTP server, Kannel, an https push service that decrypts what
it gets); Kannel's delivery receipt, a client's STOP and the tap on a push come back through the
webhook and tracking routes and change what omnicrm knows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import httpx
import orjson
import pytest

from omnicrm.bench import kannel_peer
from omnicrm.bench.outbox_seed import daytime_zone
from omnicrm.bench.push_peer import PushService
from omnicrm.bench.server import free_port, serving
from omnicrm.bench.smtp_sink import CountingSink
from omnicrm.bootstrap import bootstrap
from omnicrm.channels.webpush import generate_vapid_keys
from omnicrm.services.access import auth
from omnicrm.services.feedback.sms import mo_token
from omnicrm.settings import Settings

T = TypeVar("T")
PHONE = "+380671234567"
REMINDER = "card-application-reminder"

pytestmark = pytest.mark.skipif(kannel_peer.available() is not None, reason="Kannel is not installed")


def until(probe: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


@dataclass(frozen=True)
class Stack:
    url: str
    client: httpx.Client
    sink: CountingSink
    peer: kannel_peer.KannelPeer
    push: PushService


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    container = bootstrap(Settings(database_url=url, env="test"), migrate=True)
    with container.uow() as uow:
        now = datetime.now(UTC)
        auth.create_user(
            uow.conn, username="e2e", role="admin", password=None, branch=None, actor="test", now=now
        )
        token = auth.issue_token(
            uow.conn, username="e2e", name="e2e", ttl=timedelta(hours=1), actor="test", now=now
        )
        uow.commit()
    secret = container.settings.feedback_key.get_secret_value().encode()
    container.close()
    port = free_port()
    mo_url = f"http://127.0.0.1:{port}/v1/webhooks/kannel/mo?token={mo_token(secret)}"
    vapid = generate_vapid_keys()
    with CountingSink() as sink, kannel_peer.running(mo_url) as peer, PushService(vapid.public_key) as push:
        monkeypatch.setenv("SSL_CERT_FILE", str(push.ca_file))  # serve trusts the push service's own CA
        providers = [
            {
                "name": "kannel-a",
                "url": peer.sendsms_url,
                "username": kannel_peer.USERNAME,
                "password": kannel_peer.PASSWORD,
                "sender": "Bank",
            }
        ]
        settings = {
            "env": "test",
            "smtp_host": "127.0.0.1",
            "smtp_port": str(sink.port),
            "smtp_starttls": "false",
            "sms_providers": orjson.dumps(providers).decode(),
            "public_url": f"http://127.0.0.1:{port}",
            "dispatch_idle_ms": "50",
            "vapid_private_key": vapid.private_key,
        }
        with serving(url, 1, port=port, **settings):
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
                yield Stack(url, client, sink, peer, push)


def _client(client: httpx.Client) -> str:
    body = {
        "status": "client",
        "first_name": "Olena",
        "language": "uk",
        "timezone": daytime_zone(datetime.now(UTC)),
        "identifiers": [
            {"kind": "phone", "value": PHONE},
            {"kind": "email", "value": "olena@client.example"},
        ],
        "consents": [
            {"channel": c, "purpose": "marketing", "granted": True, "effective_at": "2026-01-01T00:00:00Z"}
            for c in ("sms", "email", "inapp", "webpush")
        ],
    }
    created = client.post("/v1/customers", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _event(client: httpx.Client, cid: str, type_: str, **attributes: Any) -> None:
    body = {
        "event_id": f"e2e-{type_}-{uuid.uuid4().hex[:12]}",  # digits only could pass for a card number
        "type": type_,
        "occurred_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        "source": "core_banking",
        "customer_id": cid,
        "attributes": attributes,
    }
    answer = client.post("/v1/events", json=body)
    assert answer.status_code == 201, answer.text


def _messages(client: httpx.Client, cid: str, scenario: str) -> list[dict[str, Any]]:
    found = client.get(f"/v1/customers/{cid}/conversations").json()["instances"]
    return [m for i in found if i["scenario_id"] == scenario for m in i["messages"]]


def test_an_sms_and_an_email_leave_through_real_peers_and_receipts_and_stop_come_back(stack: Stack) -> None:
    client, sink, peer = stack.client, stack.sink, stack.peer
    cid = _client(client)

    _event(client, cid, "payment.overdue", contract_number="L-1", days_overdue=3, amount_due=1200)
    texts = until(lambda: [m for m in peer.received() if "Olena" in m.text("ucs2")], "the SMS at the SMSC")
    assert "нагадуємо про платіж" in texts[0].text("ucs2")
    sms = until(
        lambda: [m for m in _messages(client, cid, "payment-overdue-reminder") if m["status"] == "delivered"],
        "Kannel's delivery receipt",
    )
    assert sms[0]["provider"] == "kannel-a"

    _event(client, cid, "deposit.maturing", contract_number="D-1", maturity_date="2026-12-31", amount=5000)
    email = until(lambda: _messages(client, cid, "deposit-renewal"), "the renewal e-mail queued")[0]
    until(lambda: email["idempotency_key"] in sink.arrivals(), "the e-mail at the SMTP server")
    sent = until(
        lambda: [m for m in _messages(client, cid, "deposit-renewal") if m["status"] == "sent"], "e-mail sent"
    )
    assert sent[0]["provider"] == "smtp"

    peer.inject_mo(PHONE.lstrip("+"), "Bank", "СТОП")

    def withdrawn() -> bool:
        current = client.get(f"/v1/customers/{cid}/consents").json()["current"]
        return any(
            c["channel"] == "sms" and c["purpose"] == "marketing" and not c["granted"] for c in current
        )

    until(withdrawn, "the SMS consent withdrawn by STOP")
    statuses = [m["status"] for m in _messages(client, cid, "payment-overdue-reminder")]
    assert "unsubscribed" in statuses


def test_a_push_reaches_the_device_and_its_tap_ends_the_conversation(stack: Stack) -> None:
    client, push = stack.client, stack.push
    cid = _client(client)
    device = push.device()
    subscribed = client.put(
        f"/v1/customers/{cid}/push-subscriptions/phone-1",
        json={"endpoint": push.origin + device.path, "keys": device.keys()},
    )
    assert subscribed.status_code == 201, subscribed.text

    _event(client, cid, "application.abandoned", product_class="card", application_id="A-1", last_step="x")

    [seen] = until(lambda: [s for s in push.seen_at(device) if s.plaintext], "the push read on the device")
    shown = json.loads(seen.plaintext or b"")
    assert shown["title"] == "Заявку на картку майже заповнено"
    assert shown["body"].startswith("Olena, залишилося кілька кроків")
    [message] = _messages(client, cid, REMINDER)
    assert shown["message_id"] == message["idempotency_key"]
    sent = until(
        lambda: [m for m in _messages(client, cid, REMINDER) if m["status"] == "sent"],
        "the push recorded as sent",
    )
    assert sent[0]["provider"] == "webpush"

    tapped = httpx.get(shown["url"], follow_redirects=False, timeout=10)  # the device opens the link
    assert tapped.status_code < 400, tapped.text

    def finished() -> list[dict[str, Any]]:
        found = client.get(f"/v1/customers/{cid}/conversations").json()["instances"]
        return [i for i in found if i["scenario_id"] == REMINDER and i["status"] != "active"]

    [conversation] = until(finished, "the conversation ended by the tap")
    assert [m["status"] for m in conversation["messages"]] == ["clicked"]
    assert (conversation["status"], conversation["outcome"]) == ("completed", "finished")


AMQP_URL = os.environ.get("OMNICRM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _amqp(work: Callable[[aio_pika.abc.AbstractChannel], Awaitable[T]]) -> T:
    """One piece of work on RabbitMQ with its own client, as a bank's system or subscriber would."""

    async def run() -> T:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            return await work(await connection.channel(publisher_confirms=True))

    return asyncio.run(run())


@pytest.fixture
def bridge(stack: Stack) -> Iterator[dict[str, str]]:
    """`omnicrm bridge` beside serve, on RabbitMQ, with names of its own (OMNICRM_BRIDGE_NAMES) and a
    subscriber's queue on the status exchange."""
    tag = uuid.uuid4().hex[:10]
    names = {
        "consume_exchange": f"e2e.bank.{tag}",
        "consume_queue": f"e2e.events.{tag}",
        "dead_letter_exchange": f"e2e.dead.{tag}",
        "dead_letter_queue": f"e2e.events.{tag}.dead",
        "publish_exchange": f"e2e.status.{tag}",
    }
    watch = f"e2e.watch.{tag}"

    async def subscribe(channel: aio_pika.abc.AbstractChannel) -> None:
        status = await channel.declare_exchange(
            names["publish_exchange"], aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(watch, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(status, routing_key="#")

    _amqp(subscribe)
    env = {
        **os.environ,
        "OMNICRM_DATABASE_URL": stack.url,
        "OMNICRM_AMQP_URL": AMQP_URL,
        "OMNICRM_BRIDGE_TYPE_PREFIX": "ua.bank.",
        "OMNICRM_BRIDGE_NAMES": orjson.dumps(names).decode(),
    }
    process = subprocess.Popen([sys.executable, "-m", "omnicrm", "bridge"], env=env)

    async def declared(channel: aio_pika.abc.AbstractChannel) -> bool:
        try:
            await channel.declare_queue(names["consume_queue"], passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return False
        return True

    try:
        until(lambda: _amqp(declared), "the bridge's queue declared")
        yield {**names, "watch": watch}
    finally:
        process.terminate()
        process.wait(timeout=15)

        async def remove(channel: aio_pika.abc.AbstractChannel) -> None:
            for queue in (watch, names["consume_queue"], names["dead_letter_queue"]):
                await channel.queue_delete(queue)
            for exchange in ("consume_exchange", "dead_letter_exchange", "publish_exchange"):
                await channel.exchange_delete(names[exchange])

        _amqp(remove)


def _publish(exchange: str, event: dict[str, Any]) -> None:
    """A bank system's CloudEvent, published with a confirm."""

    async def publish(channel: aio_pika.abc.AbstractChannel) -> None:
        target = await channel.get_exchange(exchange)
        body = orjson.dumps(event)
        message = aio_pika.Message(body, content_type="application/cloudevents+json", delivery_mode=2)
        await target.publish(message, routing_key=event["type"])

    _amqp(publish)


def _cloud_event(cid: str, type_: str, source: str, **attributes: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e2e-{uuid.uuid4().hex[:12]}",
        "source": source,
        "type": f"ua.bank.{type_}",
        "time": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        "subject": cid,
        "datacontenttype": "application/json",
        "data": {"attributes": attributes},
    }


def test_events_and_a_reaction_from_the_banks_broker_move_the_conversation_and_statuses_go_out(
    stack: Stack, bridge: dict[str, str]
) -> None:
    client, push = stack.client, stack.push
    cid = _client(client)
    device = push.device()
    endpoint = {"endpoint": push.origin + device.path, "keys": device.keys()}
    assert client.put(f"/v1/customers/{cid}/push-subscriptions/phone-1", json=endpoint).status_code == 201

    abandoned = _cloud_event(
        cid, "application.abandoned", "/web", product_class="card", application_id="A-7", last_step="x"
    )
    _publish(bridge["consume_exchange"], abandoned)
    [seen] = until(lambda: [s for s in push.seen_at(device) if s.plaintext], "the push read on the device")
    key = json.loads(seen.plaintext or b"")["message_id"]
    until(lambda: [m for m in _messages(client, cid, REMINDER) if m["status"] == "sent"], "the push sent")

    # The app reports the tap itself, through the broker (not the tracked link).
    tapped = _cloud_event(cid, "message.reaction", "/mobile-app", message_id=key, reaction="clicked")
    _publish(bridge["consume_exchange"], tapped)
    _publish(bridge["consume_exchange"], tapped)  # the broker redelivers: one reaction all the same

    def finished() -> list[dict[str, Any]]:
        found = client.get(f"/v1/customers/{cid}/conversations").json()["instances"]
        return [i for i in found if i["scenario_id"] == REMINDER and i["status"] != "active"]

    [conversation] = until(finished, "the conversation ended by the reaction from the broker")
    assert conversation["outcome"] == "finished"
    assert [m["status"] for m in conversation["messages"]] == ["clicked"]
    # One queue, taken in order: once an event published after the copy is stored, the copy was taken.
    after = _cloud_event(cid, "application.completed", "/web", product_class="deposit", application_id="A-8")
    _publish(bridge["consume_exchange"], after)

    def stored(type_: str) -> list[Any]:
        page = client.get(f"/v1/customers/{cid}/timeline", params={"type": type_}).json()
        return list(page["items"])

    until(lambda: stored("application.completed"), "the event published after the copy")
    assert len(stored("message.reaction")) == 1

    async def statuses(channel: aio_pika.abc.AbstractChannel) -> list[dict[str, Any]]:
        queue = await channel.get_queue(bridge["watch"])
        out = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            out.append(orjson.loads(message.body))
        return out

    published: list[dict[str, Any]] = []

    def sent_and_clicked() -> bool:
        published.extend(_amqp(statuses))
        return {"ua.omnicrm.message.sent", "ua.omnicrm.message.clicked"} <= {e["type"] for e in published}

    until(sent_and_clicked, "the statuses at the bank's subscriber")
    mine = [e for e in published if e["data"]["message_id"] == key]
    assert sorted(e["type"] for e in mine) == ["ua.omnicrm.message.clicked", "ua.omnicrm.message.sent"]
    assert {e["subject"] for e in mine} == {cid}
