"""The loop closed, as shipped (issue 19): `omnicrm serve` on the embedded default (SQLite) with its
decision and dispatch workers, a real SMTP server and a real Kannel (bearerbox, smsbox, fakesmsc).

A bank's system posts clients and events over HTTP; the shipped scenarios' messages leave through
the channels and reach the peers; Kannel's delivery receipt and a client's STOP come back through
the webhook routes and change what omnicrm knows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from omnicrm.bench import kannel_peer
from omnicrm.bench.outbox_seed import daytime_zone
from omnicrm.bench.server import free_port, serving
from omnicrm.bench.smtp_sink import CountingSink
from omnicrm.bootstrap import bootstrap
from omnicrm.services.access import auth
from omnicrm.services.feedback.sms import mo_token
from omnicrm.settings import Settings

T = TypeVar("T")
PHONE = "+380671234567"

pytestmark = pytest.mark.skipif(kannel_peer.available() is not None, reason="Kannel is not installed")


def until(probe: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[httpx.Client, CountingSink, kannel_peer.KannelPeer]]:
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
    with CountingSink() as sink, kannel_peer.running(mo_url) as peer:
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
        }
        with serving(url, 1, port=port, **settings):
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
                yield client, sink, peer


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
            for c in ("sms", "email", "inapp")
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


def test_an_sms_and_an_email_leave_through_real_peers_and_receipts_and_stop_come_back(
    stack: tuple[httpx.Client, CountingSink, kannel_peer.KannelPeer],
) -> None:
    client, sink, peer = stack
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
