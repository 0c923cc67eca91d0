"""Issue 18, point 7: every error is problem+json.

A body that is not JSON (cut short, not UTF-8, nested past any sane depth) gets the same 422 problem
on every route with a JSON body as on `/v1/events`, and an explicit null for a field that cannot be
null is refused by the contract (422 naming the field) before anything reaches the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

Headers = dict[str, str]
Json = dict[str, Any]
PROBLEM = "application/problem+json"

# Every route whose request body is JSON (checked against /openapi.json below).
JSON_BODY_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/events"),
    ("POST", "/v1/events:batch"),
    ("POST", "/v1/interactions"),
    ("POST", "/v1/interactions:batch"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/users"),
    ("POST", "/v1/users/{username}/tokens"),
    ("POST", "/v1/customers"),
    ("POST", "/v1/customers:mass-update"),
    ("PATCH", "/v1/customers/{customer_id}"),
    ("POST", "/v1/customers/{customer_id}/identifiers"),
    ("POST", "/v1/customers/{customer_id}/consents"),
    ("POST", "/v1/customers/{customer_id}/merge"),
    ("POST", "/v1/scenarios:reload"),
    ("POST", "/v1/scenarios:simulate"),
    ("POST", "/v1/campaigns"),
    ("PATCH", "/v1/campaigns/{campaign_id}"),
    ("POST", "/v1/campaigns/{campaign_id}:reject"),
    ("POST", "/v1/campaigns/{campaign_id}:cancel"),
    ("PUT", "/v1/customers/{customer_id}/push-subscriptions/{device_id}"),
    ("POST", "/v1/tasks/{task_id}:close"),
)

NOT_JSON: dict[str, bytes] = {
    "truncated": b"{",
    "not-utf8": b"\xff\xfe\x00",
    "too-deep": b"[" * 100_000,
}


def _assert_not_json_problem(response: Any) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "urn:omnicrm:problem:invalid_input"
    assert body["title"] == "Invalid input"
    assert body["status"] == 422
    assert body["detail"] == "the body is not JSON"
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["index"] is None
    assert error["field"] == "(body)"
    assert isinstance(error["reason"], str)
    assert error["reason"]


def test_the_route_list_covers_every_json_body_in_the_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    with_body = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    assert with_body == set(JSON_BODY_ROUTES)


@pytest.mark.parametrize("body", NOT_JSON.values(), ids=NOT_JSON.keys())
@pytest.mark.parametrize(("method", "route"), JSON_BODY_ROUTES, ids=[f"{m} {r}" for m, r in JSON_BODY_ROUTES])
def test_a_body_that_is_not_json_is_a_422_problem_everywhere(
    client: TestClient,
    admin: Headers,
    create_customer: Callable[..., Json],
    state_counts: Callable[[], dict[str, int]],
    method: str,
    route: str,
    body: bytes,
) -> None:
    customer_id = create_customer()["id"]
    path = route.format(
        customer_id=customer_id,
        username="admin",
        campaign_id="01NOSUCHCAMPAIGN000000000",
        device_id="browser-1",
        task_id="no-such-task",
    )
    before = state_counts()
    response = client.request(
        method, path, content=body, headers={**admin, "Content-Type": "application/json"}
    )
    _assert_not_json_problem(response)
    assert state_counts() == before


def test_a_body_without_content_type_that_is_not_json_is_the_same_problem(
    client: TestClient, admin: Headers, state_counts: Callable[[], dict[str, int]]
) -> None:
    before = state_counts()
    for path in ("/v1/customers", "/v1/users", "/v1/campaigns", "/v1/events"):
        _assert_not_json_problem(client.post(path, content=b"{", headers=admin))
    assert state_counts() == before


def test_an_explicit_null_status_on_create_is_a_422_naming_the_field(
    client: TestClient, admin: Headers, state_counts: Callable[[], dict[str, int]]
) -> None:
    before = state_counts()
    body = {
        "status": None,
        "identifiers": [{"kind": "cbs_id", "value": f"CBS-{uuid.uuid4().hex[:10]}"}],
        "first_name": "Olena",
    }
    response = client.post("/v1/customers", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "urn:omnicrm:problem:invalid_input"
    assert problem["status"] == 422
    assert problem["detail"]
    assert [e["field"] for e in problem["errors"]] == ["status"]
    assert problem["errors"][0]["index"] is None
    assert "null" in problem["errors"][0]["reason"]
    assert state_counts() == before


def test_an_explicit_null_status_on_patch_is_a_422_and_the_profile_keeps_its_status(
    client: TestClient,
    admin: Headers,
    create_customer: Callable[..., Json],
    state_counts: Callable[[], dict[str, int]],
) -> None:
    customer = create_customer(status="client")
    before = state_counts()
    response = client.patch(f"/v1/customers/{customer['id']}", json={"status": None}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert [e["field"] for e in response.json()["errors"]] == ["status"]
    assert state_counts() == before
    assert client.get(f"/v1/customers/{customer['id']}", headers=admin).json()["status"] == "client"


def test_an_absent_status_is_still_accepted(create_customer: Callable[..., Json]) -> None:
    assert create_customer()["status"]


def test_the_openapi_does_not_offer_null_for_status(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("CustomerIn", "CustomerPatch"):
        status = schemas[name]["properties"]["status"]
        assert {"type": "null"} not in status.get("anyOf", []), (name, status)
        assert status.get("type") != "null", (name, status)


def test_an_unknown_route_and_a_wrong_method_are_problems_too(client: TestClient, admin: Headers) -> None:
    missing = client.get("/v1/no-such-route", headers=admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["status"] == 404
    wrong = client.put("/v1/campaigns", json={}, headers=admin)
    assert wrong.status_code == 405
    assert wrong.headers["content-type"] == PROBLEM
    assert wrong.json()["status"] == 405
    assert wrong.headers["allow"]
