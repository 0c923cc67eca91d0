"""Authentication and role checks on the HTTP API."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient


def test_no_token_is_401(client: TestClient) -> None:
    response = client.get("/v1/customers/lookup", params={"kind": "phone", "value": "+380671234567"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_unknown_token_is_401(client: TestClient) -> None:
    response = client.get("/v1/me", headers={"Authorization": "Bearer ocrm_not-a-real-token"})
    assert response.status_code == 401


def test_operator_cannot_mass_update(
    client: TestClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    body = {
        "filter": {"status": "client"},
        "set": {"value_tier": "premium"},
        "dry_run": True,
        "reason": "test",
    }
    assert (
        client.post("/v1/customers:mass-update", json=body, headers=headers_for("operator")).status_code
        == 403
    )
    assert (
        client.post("/v1/customers:mass-update", json=body, headers=headers_for("marketer")).status_code
        == 200
    )
