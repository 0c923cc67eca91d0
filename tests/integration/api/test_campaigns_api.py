"""Campaigns over HTTP: roles, maker-checker, refusals, and a launch that answers 202 at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omnicrm.api import campaigns as campaign_routes
from omnicrm.bootstrap import Container
from omnicrm.domain.decision import CAMPAIGN_EVENT
from omnicrm.services.campaigns import campaign_launch as launching
from omnicrm.store.tables import campaigns as campaigns_table
from omnicrm.store.tables import events

NOON = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # 12:00 in Kyiv
Headers = dict[str, str]
Json = dict[str, Any]
BODY: Json = {
    "name": "Pre-approved loans, spring",
    "scenario_id": "pre-approved-loan-follow-up",
    "segment": '"spring" in customer.segments',
}


@pytest.fixture
def marketer(headers_for: Callable[[str], Headers]) -> Headers:
    return headers_for("marketer")


@pytest.fixture
def audience(create_customer: Callable[..., Json]) -> list[str]:
    """Three clients in the segment (one without consent) and one outside it."""
    consents = [
        {"channel": c, "purpose": "marketing", "granted": True, "effective_at": "2026-01-01T00:00:00Z"}
        for c in ("webpush", "email")
    ]
    members = [
        create_customer(status="client", segments=["spring"], consents=consents)["id"],
        create_customer(status="client", segments=["spring"], consents=consents)["id"],
        create_customer(status="client", segments=["spring"])["id"],
    ]
    create_customer(status="client", segments=["autumn"], consents=consents)
    return members


def _post(client: TestClient, path: str, headers: Headers, body: Json | None = None) -> Json:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201, 202), response.text
    result: Json = response.json()
    return result


def _approved(client: TestClient, maker: Headers, checker: Headers) -> str:
    campaign_id: str = _post(client, "/v1/campaigns", maker, BODY)["id"]
    _post(client, f"/v1/campaigns/{campaign_id}:submit", maker)
    _post(client, f"/v1/campaigns/{campaign_id}:dry-run", maker)
    _post(client, f"/v1/campaigns/{campaign_id}:approve", checker)
    return campaign_id


def _wait_for(client: TestClient, campaign_id: str, headers: Headers, status: str) -> Json:
    deadline = time.monotonic() + 20
    while True:
        response = client.get(f"/v1/campaigns/{campaign_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: Json = response.json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, f"still {body['status']} after 20 s: {body}"
        time.sleep(0.05)


def test_no_token_is_401_and_roles_without_the_permission_get_403(
    client: TestClient, headers_for: Callable[[str], Headers], marketer: Headers
) -> None:
    assert client.get("/v1/campaigns").status_code == 401
    assert client.post("/v1/campaigns", json=BODY).status_code == 401
    operator, auditor, compliance = headers_for("operator"), headers_for("auditor"), headers_for("compliance")
    assert client.get("/v1/campaigns", headers=operator).status_code == 403
    assert client.post("/v1/campaigns", json=BODY, headers=operator).status_code == 403
    assert client.get("/v1/campaigns", headers=auditor).status_code == 403
    assert client.post("/v1/campaigns", json=BODY, headers=compliance).status_code == 403  # checks, not makes
    campaign_id = _post(client, "/v1/campaigns", marketer, BODY)["id"]
    for action in ("submit", "approve", "reject", "cancel", "dry-run", "launch"):
        response = client.post(
            f"/v1/campaigns/{campaign_id}:{action}", json={"reason": "x" * 5}, headers=operator
        )
        assert response.status_code == 403, (action, response.text)
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=compliance).status_code == 200


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"segment": "customer.status =="}, "segment", "Syntax error"),
        ({"segment": 'customer.tier == "gold"'}, "segment", "cannot run on a sample client"),
        ({"scenario_id": "no-such-scenario"}, "scenario_id", "no scenario"),
        ({"budget": 100}, "budget", "Extra inputs are not permitted"),
        ({"starts_at": "2026-12-01T09:00:00"}, "starts_at", "timezone"),
    ],
)
def test_a_bad_campaign_is_refused_with_422_and_nothing_is_stored(
    client: TestClient, marketer: Headers, count: Callable[..., int], change: Json, field: str, words: str
) -> None:
    response = client.post("/v1/campaigns", json={**BODY, **change}, headers=marketer)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert words in errors[0]["reason"]
    assert count(campaigns_table) == 0


def test_maker_checker_the_creator_cannot_approve_another_user_can(
    client: TestClient,
    marketer: Headers,
    headers_for: Callable[[str], Headers],
    audience: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The dry run decides now: at noon in Kyiv, so that quiet hours (21:00-09:00) delay nobody,
    # whenever the suite runs (it failed in the evening when it read the wall clock).
    monkeypatch.setattr(campaign_routes, "_now", lambda: NOON)
    campaign_id = _post(client, "/v1/campaigns", marketer, BODY)["id"]
    early = client.post(f"/v1/campaigns/{campaign_id}:approve", headers=headers_for("compliance"))
    assert early.status_code == 409
    assert "draft" in early.json()["detail"]
    _post(client, f"/v1/campaigns/{campaign_id}:submit", marketer)
    dry = _post(client, f"/v1/campaigns/{campaign_id}:dry-run", marketer)
    assert (dry["audience"], dry["would_contact"], dry["suppressed"]) == (3, 2, {"channel": 1})

    own = client.post(f"/v1/campaigns/{campaign_id}:approve", headers=marketer)
    assert own.status_code == 403
    assert "maker-checker" in own.json()["detail"]
    assert "may not approve it" in own.json()["detail"]

    rejected = _post(
        client, f"/v1/campaigns/{campaign_id}:reject", headers_for("compliance"), {"reason": "why now?"}
    )
    assert (rejected["status"], rejected["history"][-1]["details"]["reason"]) == ("draft", "why now?")
    _post(client, f"/v1/campaigns/{campaign_id}:submit", marketer)
    second = headers_for("marketer")
    approved = _post(client, f"/v1/campaigns/{campaign_id}:approve", second)
    assert approved["status"] == "approved"
    assert approved["approved_by"].startswith("marketer-")
    assert approved["approved_by"] != approved["created_by"]


def test_launch_answers_202_at_once_and_the_campaign_finishes_in_the_background(
    client: TestClient,
    container: Container,
    marketer: Headers,
    headers_for: Callable[[str], Headers],
    audience: list[str],
    audit_actions: Callable[[str], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaign_id = _approved(client, marketer, headers_for("compliance"))
    # Hold the background launch until the API has answered, so "answered before done" is certain.
    gate, real = threading.Event(), launching.run_launch

    def held(*args: Any, **kwargs: Any) -> Json:
        assert gate.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(launching, "run_launch", held)
    started = time.monotonic()
    response = client.post(f"/v1/campaigns/{campaign_id}:launch", headers=marketer)
    assert time.monotonic() - started < 2
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/campaigns/{campaign_id}"
    assert response.json()["status"] == "running"
    again = client.post(f"/v1/campaigns/{campaign_id}:launch", headers=marketer)
    assert again.status_code == 409
    assert "running" in again.json()["detail"]
    gate.set()

    done = _wait_for(client, campaign_id, marketer, "finished")
    assert (done["audience"], done["processed"]) == (3, 3)
    with container.reader() as conn:
        query = select(events.c.customer_id).where(events.c.type == CAMPAIGN_EVENT)
        assert sorted(conn.execute(query).scalars()) == sorted(audience)
    for action in ("created", "submit", "approve", "launched", "finished"):
        assert audit_actions(f"campaign.{action}") == 1, action
    listed = client.get("/v1/campaigns", params={"status": "finished"}, headers=marketer).json()
    assert [c["id"] for c in listed["items"]] == [campaign_id]


def test_unknown_campaign_is_404_and_a_cancelled_one_cannot_launch(
    client: TestClient, marketer: Headers, container: Container
) -> None:
    assert client.get("/v1/campaigns/01NOSUCHCAMPAIGN", headers=marketer).status_code == 404
    campaign_id = _post(client, "/v1/campaigns", marketer, BODY)["id"]
    assert client.post(f"/v1/campaigns/{campaign_id}:cancel", json={}, headers=marketer).status_code == 422
    cancelled = _post(client, f"/v1/campaigns/{campaign_id}:cancel", marketer, {"reason": "duplicate"})
    assert cancelled["status"] == "cancelled"
    response = client.post(f"/v1/campaigns/{campaign_id}:launch", headers=marketer)
    assert response.status_code == 409
    assert "cancelled" in response.json()["detail"]
    with container.reader() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 0


def test_a_draft_can_be_edited_and_loses_its_dry_run(
    client: TestClient, marketer: Headers, headers_for: Callable[[str], Headers], audience: list[str]
) -> None:
    campaign_id = _post(client, "/v1/campaigns", marketer, BODY)["id"]
    assert _post(client, f"/v1/campaigns/{campaign_id}:dry-run", marketer)["audience"] == 3

    edited = client.patch(
        f"/v1/campaigns/{campaign_id}", json={"segment": '"autumn" in customer.segments'}, headers=marketer
    )

    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert (body["segment"], body["dry_run"], body["name"]) == (
        '"autumn" in customer.segments',
        None,
        BODY["name"],
    )
    assert body["history"][-1]["action"] == "campaign.edit"
    assert _post(client, f"/v1/campaigns/{campaign_id}:dry-run", marketer)["audience"] == 1
    assert client.patch(f"/v1/campaigns/{campaign_id}", json={}, headers=marketer).status_code == 422
    operator = headers_for("operator")
    assert (
        client.patch(f"/v1/campaigns/{campaign_id}", json={"name": "x y z"}, headers=operator).status_code
        == 403
    )


def test_a_bad_edit_changes_nothing_and_a_submitted_campaign_is_not_editable(
    client: TestClient, marketer: Headers
) -> None:
    campaign_id = _post(client, "/v1/campaigns", marketer, BODY)["id"]

    bad = client.patch(
        f"/v1/campaigns/{campaign_id}",
        json={"segment": "customer.no_such_field == 1", "scenario_id": "no-such-scenario"},
        headers=marketer,
    )

    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"segment", "scenario_id"}
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=marketer).json()["segment"] == BODY["segment"]
    _post(client, f"/v1/campaigns/{campaign_id}:submit", marketer)
    late = client.patch(f"/v1/campaigns/{campaign_id}", json={"name": "Too late"}, headers=marketer)
    assert late.status_code == 409
    assert "is submitted" in late.json()["detail"]
