"""GET /v1/customers/{id}/decisions and /conversations, fed by the app's background decision worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

Headers = dict[str, str]
Json = dict[str, Any]
LOAN = "loan-application-reminder"
ACTION_WORDS = {
    "contact": "contact now",
    "delay": "contact later",
    "suppress": "do not contact",
    "escalate": "hand over to a person",
    "join": "continue the running conversation",
}


def _client_with_loan_decision(client: TestClient, admin: Headers) -> tuple[str, Json]:
    """Create a consenting client, post an abandoned loan application, wait for the worker's decision."""
    cookie = f"ck-{uuid.uuid4().hex[:8]}"
    body = {
        "status": "client",
        "first_name": "Olena",
        "identifiers": [{"kind": "cookie_id", "value": cookie}],
        "consents": [
            {"channel": c, "purpose": "marketing", "granted": True, "effective_at": "2026-01-01T00:00:00Z"}
            for c in ("webpush", "email", "callcentre")
        ],
    }
    created = client.post("/v1/customers", json=body, headers=admin)
    assert created.status_code == 201, created.text
    cid: str = created.json()["id"]
    occurred = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "event_id": f"ev-{uuid.uuid4().hex[:8]}",
        "type": "application.abandoned",
        "occurred_at": occurred,
        "source": "web",
        "identifiers": {"cookie_id": cookie},
        "attributes": {"product_class": "consumer_loan", "application_id": "A-1", "last_step": "documents"},
    }
    posted = client.post("/v1/events", json=event, headers=admin)
    assert posted.status_code == 201, posted.text
    deadline = time.monotonic() + 5
    while True:
        response = client.get(f"/v1/customers/{cid}/decisions", headers=admin)
        assert response.status_code == 200, response.text
        mine = [d for d in response.json()["items"] if d["scenario_id"] == LOAN]
        if mine:
            assert len(mine) == 1
            assert mine[0]["event_id"] == event["event_id"]
            return cid, mine[0]
        assert time.monotonic() < deadline, "the decision worker did not decide within 5 s"
        time.sleep(0.05)


@pytest.fixture
def admin(headers_for: Callable[[str], Headers]) -> Headers:
    return headers_for("admin")


def test_decisions_are_explained_with_every_rule(
    client: TestClient, admin: Headers, headers_for: Callable[[str], Headers]
) -> None:
    cid, decision = _client_with_loan_decision(client, admin)

    response = client.get(f"/v1/customers/{cid}/decisions", headers=headers_for("operator"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["customer_id"] == cid
    item = next(d for d in body["items"] if d["scenario_id"] == LOAN)
    assert item == decision
    text = item["explanation"]
    assert f"scenario {LOAN} v" in text
    assert item["action"] in ("contact", "delay")  # delay only if the suite runs in Kyiv's quiet hours
    assert ACTION_WORDS[item["action"]] in text
    assert item["event_id"] in text
    rules = [r["rule"] for r in item["rules"]]
    assert {"audience", "channel", "goal", "reentry", "frequency_cap", "quiet_hours"} <= set(rules)
    for rule in item["rules"]:
        assert f"  - {rule['rule']}: " in text
        assert rule["detail"] in text


def test_conversations_list_instances_and_outbox(
    client: TestClient, admin: Headers, headers_for: Callable[[str], Headers]
) -> None:
    cid, decision = _client_with_loan_decision(client, admin)

    response = client.get(f"/v1/customers/{cid}/conversations", headers=headers_for("operator"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["customer_id"] == cid
    loan = [i for i in body["instances"] if i["scenario_id"] == LOAN]
    assert len(loan) == 1
    assert loan[0]["status"] == "active"
    assert loan[0]["id"] == decision["instance_id"]
    queued = [o for o in body["outbox"] if o["instance_id"] == loan[0]["id"]]
    if decision["action"] == "contact":
        assert loan[0]["step"] == "wait_push"
        assert [(o["kind"], o["channel"], o["status"]) for o in queued] == [("message", "webpush", "queued")]
        assert queued[0]["idempotency_key"]
    else:  # held by quiet hours: nothing queued yet
        assert loan[0]["step"] == "push"
        assert queued == []


@pytest.mark.parametrize("path", ["decisions", "conversations"])
def test_access_control(
    client: TestClient, admin: Headers, headers_for: Callable[[str], Headers], path: str
) -> None:
    cid, _ = _client_with_loan_decision(client, admin)
    url = f"/v1/customers/{cid}/{path}"

    assert client.get(url, headers=headers_for("operator")).status_code == 200
    assert client.get(url, headers=headers_for("auditor")).status_code == 403
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_unknown_customer_is_404(client: TestClient, admin: Headers) -> None:
    assert client.get("/v1/customers/NOPE-0000/decisions", headers=admin).status_code == 404
