"""Issue 18, point 10: every answer carries the security headers; personal data is never cached;
the docs page runs under a Content-Security-Policy; CORS stays closed."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

Headers = dict[str, str]


def _customer(client: TestClient, admin: Headers) -> str:
    person = {"identifiers": [{"kind": "cbs_id", "value": "CIF-77"}], "first_name": "Olena"}
    response = client.post("/v1/customers", json=person, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_personal_data_is_never_cached_and_never_sniffed(client: TestClient, admin: Headers) -> None:
    customer_id = _customer(client, admin)
    for path in (f"/v1/customers/{customer_id}", f"/v1/customers/{customer_id}/timeline", "/v1/me"):
        response = client.get(path, headers=admin)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["content-security-policy"].startswith("default-src 'none'"), path
        assert response.headers["x-frame-options"] == "DENY", path


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/customers/nobody", 401), ("POST", "/v1/events", 401), ("GET", "/v1/nowhere", 404)],
)
def test_errors_carry_the_same_headers(client: TestClient, method: str, path: str, status: int) -> None:
    response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_a_card_number_refusal_carries_them_too(client: TestClient, admin: Headers) -> None:
    response = client.get("/v1/customers/lookup?kind=phone&value=4111111111111111", headers=admin)
    assert response.status_code == 422
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_docs_page_loads_scripts_from_this_server_only(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, flags=re.DOTALL)
    assert scripts, "the page loads Swagger UI"
    for attributes, inline in scripts:
        assert not inline.strip(), "an inline script would be blocked by the policy"
        source = re.search(r'src="([^"]+)"', attributes)
        assert source is not None, attributes
        assert source.group(1).startswith("/"), attributes
        asset = client.get(source.group(1))
        assert asset.status_code == 200, source.group(1)
        assert "javascript" in asset.headers["content-type"]
    assert "/openapi.json" in client.get("/docs/start.js").text


def test_cors_stays_closed(client: TestClient, headers_for: Callable[[str], Headers]) -> None:
    origin = {"Origin": "https://evil.example"}
    preflight = client.options("/v1/me", headers={**origin, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers
    response = client.get("/v1/me", headers={**headers_for("operator"), **origin})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
