"""The internet bank's inbox and web push subscriptions over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from omnicrm.bootstrap import Container
from omnicrm.store import inbox, push_subscriptions

Headers = dict[str, str]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _subscription(endpoint: str = "https://push.example.net/wpush/v2/abc") -> dict[str, Any]:
    """What a browser's PushSubscription.toJSON() gives: a fresh P-256 key and auth secret."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": endpoint,
        "expirationTime": None,
        "keys": {"p256dh": _b64(point), "auth": _b64(os.urandom(16))},
    }


def _client(client: TestClient, admin: Headers, first_name: str = "Olena") -> str:
    body = {
        "status": "client",
        "first_name": first_name,
        "identifiers": [{"kind": "cookie_id", "value": f"ck-{uuid.uuid4().hex[:10]}"}],
    }
    created = client.post("/v1/customers", json=body, headers=admin)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _deliver(container: Container, cid: str, key: str, at: datetime, title: str = "Your deposit") -> None:
    """What the dispatch worker does with an `inapp` message: the rendered text into the inbox."""
    with container.uow() as uow:
        inbox.deliver(uow.conn, key, cid, title, f"Text of {key}", "uk", at)
        uow.commit()


def _opened(client: TestClient, admin: Headers, cid: str) -> list[dict[str, Any]]:
    page = client.get(f"/v1/customers/{cid}/timeline", params={"type": "message.reaction"}, headers=admin)
    assert page.status_code == 200, page.text
    return [e for e in page.json()["items"] if e["attributes"]["reaction"] == "opened"]


@pytest.fixture
def admin(headers_for: Callable[[str], Headers]) -> Headers:
    return headers_for("admin")


def test_inbox_newest_first_with_unread_count_and_pages(
    client: TestClient, container: Container, admin: Headers, headers_for: Callable[[str], Headers]
) -> None:
    cid = _client(client, admin)
    other = _client(client, admin, "Petro")
    base = datetime.now(UTC) - timedelta(hours=1)
    for n in range(5):
        _deliver(container, cid, f"msg-{n}", base + timedelta(minutes=n))
    _deliver(container, other, "msg-other", base)
    with container.uow() as uow:  # a retried dispatch stores nothing twice
        assert not inbox.deliver(uow.conn, "msg-0", cid, "again", "again", "uk", base)
        uow.commit()
    bank = headers_for("integration")
    first = client.get(f"/v1/customers/{cid}/inbox", params={"limit": 3}, headers=bank)
    assert first.status_code == 200, first.text
    assert first.json()["unread"] == 5
    assert [m["message_key"] for m in first.json()["items"]] == ["msg-4", "msg-3", "msg-2"]
    rest = client.get(
        f"/v1/customers/{cid}/inbox", params={"limit": 3, "cursor": first.json()["next_cursor"]}, headers=bank
    )
    assert [m["message_key"] for m in rest.json()["items"]] == ["msg-1", "msg-0"]
    assert rest.json()["next_cursor"] is None
    assert rest.json()["items"][-1]["title"] == "Your deposit"
    assert client.get(f"/v1/customers/{cid}/inbox", headers=headers_for("operator")).status_code == 200
    assert client.get(f"/v1/customers/{cid}/inbox", headers=headers_for("marketer")).status_code == 403
    assert client.get("/v1/customers/nobody/inbox", headers=bank).status_code == 404


def test_read_twice_is_one_opened_reaction(
    client: TestClient, container: Container, admin: Headers, headers_for: Callable[[str], Headers]
) -> None:
    cid = _client(client, admin)
    _deliver(container, cid, "msg-a", datetime.now(UTC))
    _deliver(container, cid, "msg-b", datetime.now(UTC))
    bank = headers_for("integration")
    answers = [client.post(f"/v1/customers/{cid}/inbox/msg-a:read", headers=bank) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["read_at"] == answers[1].json()["read_at"] is not None
    opened = _opened(client, admin, cid)
    assert [e["attributes"] for e in opened] == [{"message_id": "msg-a", "reaction": "opened"}]
    assert opened[0]["channel"] == "inapp"
    assert client.get(f"/v1/customers/{cid}/inbox", headers=bank).json()["unread"] == 1
    # the operator sees the inbox but does not act as the client; another client's message is not theirs
    assert (
        client.post(f"/v1/customers/{cid}/inbox/msg-b:read", headers=headers_for("operator")).status_code
        == 403
    )
    other = _client(client, admin, "Petro")
    assert client.post(f"/v1/customers/{other}/inbox/msg-b:read", headers=bank).status_code == 404
    assert client.get(f"/v1/customers/{cid}/inbox", headers=bank).json()["unread"] == 1


def test_inbox_follows_a_merge(client: TestClient, container: Container, admin: Headers) -> None:
    survivor, merged = _client(client, admin), _client(client, admin, "Olena K")
    _deliver(container, survivor, "msg-s", datetime.now(UTC) - timedelta(minutes=1))
    _deliver(container, merged, "msg-m", datetime.now(UTC))
    done = client.post(f"/v1/customers/{survivor}/merge", json={"other_id": merged}, headers=admin)
    assert done.status_code == 200, done.text
    for asked in (survivor, merged):
        page = client.get(f"/v1/customers/{asked}/inbox", headers=admin).json()
        assert page["customer_id"] == survivor
        assert [m["message_key"] for m in page["items"]] == ["msg-m", "msg-s"]
    assert client.post(f"/v1/customers/{survivor}/inbox/msg-m:read", headers=admin).status_code == 200
    undone = client.post(f"/v1/customers/{merged}/unmerge", headers=admin)
    assert undone.status_code == 200, undone.text
    assert [
        m["message_key"] for m in client.get(f"/v1/customers/{merged}/inbox", headers=admin).json()["items"]
    ] == ["msg-m"]


def test_push_subscription_put_replace_delete(
    client: TestClient, container: Container, admin: Headers, headers_for: Callable[[str], Headers]
) -> None:
    cid = _client(client, admin)
    bank = headers_for("integration")
    url = f"/v1/customers/{cid}/push-subscriptions/browser-1"
    first = _subscription()
    assert client.put(url, json=first, headers=bank).status_code == 201
    second = _subscription("https://push.example.net/wpush/v2/def")
    replaced = client.put(url, json=second, headers=bank)
    assert replaced.status_code == 200, replaced.text
    assert (
        client.put(f"/v1/customers/{cid}/push-subscriptions/phone-2", json=first, headers=bank).status_code
        == 201
    )
    with container.reader() as conn:
        stored = push_subscriptions.of_customer(conn, cid)
    assert {(s["device_id"], s["endpoint"], s["p256dh"]) for s in stored} == {
        ("browser-1", second["endpoint"], second["keys"]["p256dh"]),
        ("phone-2", first["endpoint"], first["keys"]["p256dh"]),
    }
    assert client.put(url, json=first, headers=headers_for("operator")).status_code == 403
    assert client.delete(url, headers=bank).status_code == 204
    assert client.delete(url, headers=bank).status_code == 404
    with container.uow() as uow:  # what dispatch does on a 404/410 from the push service
        (left,) = push_subscriptions.of_customer(uow.conn, cid)
        assert push_subscriptions.remove(uow.conn, left["id"])
        assert not push_subscriptions.remove(uow.conn, left["id"])
        uow.commit()
    with container.reader() as conn:
        assert push_subscriptions.of_customer(conn, cid) == []


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = _subscription()
    change(body)
    return body


_NOT_ON_CURVE = _b64(b"\x04" + b"\x01" * 64)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_broken(lambda b: b.update(endpoint="http://push.example.net/x")), "endpoint"),
        (_broken(lambda b: b.update(endpoint="https:///nohost")), "endpoint"),
        (_broken(lambda b: b.update(endpoint="https://user:pw@push.example.net/x")), "endpoint"),
        (_broken(lambda b: b["keys"].update(p256dh=_b64(b"\x04" * 33))), "keys.p256dh"),
        (_broken(lambda b: b["keys"].update(p256dh=_NOT_ON_CURVE)), "keys.p256dh"),
        (
            _broken(
                lambda b: b["keys"].update(
                    p256dh=b["keys"]["p256dh"].replace("-", "+").replace("_", "/") + "+"
                )
            ),
            "keys.p256dh",
        ),
        (_broken(lambda b: b["keys"].update(auth=_b64(os.urandom(15)))), "keys.auth"),
        (_broken(lambda b: b["keys"].update(auth="!!!notbase64!!!")), "keys.auth"),
        (_broken(lambda b: b["keys"].pop("auth")), "keys.auth"),
        (_broken(lambda b: b.update(colour="red")), "colour"),
    ],
)
def test_push_subscription_validation(
    client: TestClient,
    container: Container,
    admin: Headers,
    headers_for: Callable[[str], Headers],
    body: dict[str, Any],
    field: str,
) -> None:
    cid = _client(client, admin)
    refused = client.put(
        f"/v1/customers/{cid}/push-subscriptions/browser-1", json=body, headers=headers_for("integration")
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in refused.json()["errors"]}
    with container.reader() as conn:
        assert push_subscriptions.of_customer(conn, cid) == []


def test_push_subscription_device_id_and_customer_checked(
    client: TestClient, admin: Headers, headers_for: Callable[[str], Headers]
) -> None:
    cid = _client(client, admin)
    bank = headers_for("integration")
    bad_device = client.put(
        f"/v1/customers/{cid}/push-subscriptions/-bad%20id", json=_subscription(), headers=bank
    )
    assert bad_device.status_code == 422
    unknown = client.put(
        "/v1/customers/nobody/push-subscriptions/browser-1", json=_subscription(), headers=bank
    )
    assert unknown.status_code == 404


def test_erasure_empties_the_inbox_texts_and_forgets_the_devices(
    client: TestClient, container: Container, admin: Headers, headers_for: Callable[[str], Headers]
) -> None:
    cid = _client(client, admin)
    _deliver(container, cid, "msg-secret", datetime.now(UTC), title="For Olena only")
    put = client.put(
        f"/v1/customers/{cid}/push-subscriptions/browser-1",
        json=_subscription(),
        headers=headers_for("integration"),
    )
    assert put.status_code == 201
    asked = client.post(f"/v1/customers/{cid}:erase", headers=headers_for("compliance"))
    assert asked.status_code == 202, asked.text
    approved = client.post(
        f"/v1/erasure-requests/{asked.json()['id']}:approve", headers=headers_for("compliance")
    )
    assert approved.status_code == 200, approved.text
    rows = approved.json()["rows"]
    assert (rows["inbox_messages"], rows["push_subscriptions"]) == (1, 1)
    with container.reader() as conn:
        (kept,) = inbox.page(conn, [cid], before=None, limit=10)
        assert (kept["title"], kept["body"]) == (None, "")
        assert push_subscriptions.of_customer(conn, cid) == []
