"""The served OpenAPI contract: every route documented, the event envelope included, the token scheme
on every route that needs one."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

PUBLIC = {("/healthz", "get"), ("/v1/auth/login", "post")}


def _schema(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def test_the_intake_routes_document_the_event_envelope(client: TestClient) -> None:
    schema = _schema(client)
    event = schema["components"]["schemas"]["EventIn"]
    assert {"event_id", "type", "occurred_at", "source"} <= set(event["required"])
    for path in ("/v1/events", "/v1/interactions"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/EventIn"}
    batch = schema["paths"]["/v1/events:batch"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert batch["properties"]["items"]["maxItems"] == 1000


def test_every_route_but_health_and_login_needs_the_token(client: TestClient) -> None:
    schema = _schema(client)
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operations = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(operations) > 30
    open_ones = {(path, method) for path, method, op in operations if not op.get("security")}
    assert open_ones == PUBLIC


def test_the_docs_page_loads_nothing_from_the_internet(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:href|src)="([^"]+)"', page.text)
    scripts = [a for a in assets if a.endswith((".js", ".css", ".png"))]
    assert len(scripts) >= 4
    # The start-up script is a file of its own (the page's CSP allows no inline script).
    assert 'url: "/openapi.json"' in client.get("/docs/start.js").text
    for asset in scripts:
        assert asset.startswith(("/docs-assets/", "/docs/")), asset
        fetched = client.get(asset)
        assert fetched.status_code == 200, asset
        assert len(fetched.content) > (500 if asset.startswith("/docs-assets/") else 100), asset
    assert client.get("/redoc").status_code == 404  # ReDoc would load its script from a CDN
