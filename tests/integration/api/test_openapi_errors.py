"""Issue 18, point 7: the OpenAPI lists every status an operation can answer, errors as
problem+json with the `Problem` schema, and states the server's own limits (so a request the schema
allows is one the server takes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

Json = dict[str, Any]
PROBLEM = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
SAFE = {"get", "head", "options"}


def _spec(client: TestClient) -> Json:
    spec: Json = client.get("/openapi.json").json()
    return spec


def _operations(spec: Json) -> list[tuple[str, str, Json]]:
    return [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def _response(spec: Json, response: Json) -> Json:
    """A response object, following one `$ref` into components/responses."""
    ref = response.get("$ref")
    if ref is None:
        return response
    found: Json = spec["components"]["responses"][ref.rsplit("/", 1)[-1]]
    return found


def _documented(spec: Json, op: Json, status: int) -> Json | None:
    response = op["responses"].get(str(status))
    return None if response is None else _response(spec, response)


def test_the_problem_schema_is_a_component(client: TestClient) -> None:
    problem = _spec(client)["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert problem["properties"]["errors"]["type"] == "array"
    item = problem["properties"]["errors"]["items"]
    assert set(item["required"]) == {"index", "field", "reason"}


def test_every_error_of_every_operation_is_problem_json(client: TestClient) -> None:
    spec = _spec(client)
    for path, method, op in _operations(spec):
        errors = {int(s): r for s, r in op["responses"].items() if int(s) >= 400}
        assert {422, 503} <= set(errors), (method, path, sorted(errors))
        for status, response in errors.items():
            content = _response(spec, response)["content"]
            assert set(content) == {PROBLEM}, (method, path, status, content)
            assert content[PROBLEM]["schema"] == PROBLEM_REF, (method, path, status)


def test_the_old_validation_error_shape_is_gone(client: TestClient) -> None:
    schemas = _spec(client)["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas


def test_503_comes_with_retry_after_everywhere(client: TestClient) -> None:
    spec = _spec(client)
    for path, method, op in _operations(spec):
        unavailable = _documented(spec, op, 503)
        assert unavailable is not None, (method, path)
        assert unavailable["headers"]["Retry-After"]["required"] is True, (method, path)


def test_secured_operations_document_401_and_403(client: TestClient) -> None:
    spec = _spec(client)
    for path, method, op in _operations(spec):
        secured = bool(op.get("security"))
        unauthenticated = _documented(spec, op, 401)
        if secured:
            assert unauthenticated is not None, (method, path)
            assert "WWW-Authenticate" in unauthenticated["headers"], (method, path)
            assert _documented(spec, op, 403) is not None, (method, path)
        elif path != "/v1/auth/login":  # a wrong password is a 401 too
            assert unauthenticated is None, (method, path)


def test_404_where_a_path_names_a_thing_or_a_lookup_finds_one(client: TestClient) -> None:
    spec = _spec(client)
    for path, method, op in _operations(spec):
        if "{" in path:
            assert _documented(spec, op, 404) is not None, (method, path)
    assert _documented(spec, spec["paths"]["/v1/customers/lookup"]["get"], 404) is not None
    assert _documented(spec, spec["paths"]["/v1/me"]["get"], 404) is None


def test_409_on_secured_writes(client: TestClient) -> None:
    spec = _spec(client)
    for path, method, op in _operations(spec):
        conflict = _documented(spec, op, 409)
        assert (conflict is not None) == (method not in SAFE and bool(op.get("security"))), (method, path)


def test_413_on_every_operation_with_a_body(client: TestClient) -> None:
    spec = _spec(client)
    for path, method, op in _operations(spec):
        too_large = _documented(spec, op, 413)
        assert (too_large is not None) == ("requestBody" in op), (method, path)


def test_login_documents_429_with_retry_after(client: TestClient) -> None:
    spec = _spec(client)
    login = spec["paths"]["/v1/auth/login"]["post"]
    throttled = _documented(spec, login, 429)
    assert throttled is not None
    assert throttled["headers"]["Retry-After"]["required"] is True
    assert _documented(spec, login, 401) is not None
    assert _documented(spec, spec["paths"]["/v1/me"]["get"], 429) is None


def test_success_responses_keep_their_json(client: TestClient) -> None:
    spec = _spec(client)
    created = spec["paths"]["/v1/customers"]["post"]["responses"]["200"]
    assert "application/json" in created["content"]
    revoked = spec["paths"]["/v1/users/{username}/tokens/{token_id}"]["delete"]["responses"]["204"]
    assert not revoked.get("content")


def _batch_items(spec: Json, path: str) -> Json:
    body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    items: Json = body["properties"]["items"]
    return items


@pytest.mark.parametrize("path", ["/v1/events:batch", "/v1/interactions:batch"])
def test_a_batch_states_it_needs_at_least_one_item(
    client: TestClient, admin: dict[str, str], path: str
) -> None:
    items = _batch_items(_spec(client), path)
    assert items["minItems"] == 1
    assert items["maxItems"] == 1000
    refused = client.post(path, json={"items": []}, headers=admin)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM


def test_a_new_users_password_states_its_minimum_length(
    client: TestClient, admin: dict[str, str], state_counts: Callable[[], dict[str, int]]
) -> None:
    schemas = _spec(client)["components"]["schemas"]
    password = schemas["UserIn"]["properties"]["password"]
    lengths = [alt.get("minLength") for alt in password.get("anyOf", [password])]
    assert 12 in lengths
    refused = client.post(
        "/v1/users", json={"username": "shortpw", "role": "operator", "password": "abc"}, headers=admin
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM
    assert [e["field"] for e in refused.json()["errors"]] == ["password"]


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/v1/campaigns", "/v1/campaigns"),
        ("/v1/campaigns/{campaign_id}", "/v1/campaigns/01NOSUCHCAMPAIGN000000000"),
        ("/v1/campaigns/{campaign_id}:approve", "/v1/campaigns/01NOSUCHCAMPAIGN000000000:approve"),
        ("/v1/customers/{customer_id}/consents", "/v1/customers/nobody/consents"),
        ("/v1/users/{username}/tokens", "/v1/users/someone/tokens"),
    ],
)
def test_a_wrong_method_lists_the_documented_methods_of_its_path_in_allow(
    client: TestClient, admin: dict[str, str], template: str, path: str
) -> None:
    documented = {method.upper() for method in _spec(client)["paths"][template]}
    answer = client.request("PUT", path, json={}, headers=admin)
    assert answer.status_code == 405
    assert answer.headers["content-type"] == PROBLEM
    assert {m.strip() for m in answer.headers["allow"].split(",")} == documented


def test_a_flag_is_a_json_boolean_not_a_word(
    client: TestClient, admin: dict[str, str], state_counts: Callable[[], dict[str, int]]
) -> None:
    before = state_counts()
    body = {
        "identifiers": [{"kind": "cbs_id", "value": "CBS-FLAG-1"}],
        "consents": [{"channel": "email", "purpose": "marketing", "granted": "yes"}],
    }
    refused = client.post("/v1/customers", json=body, headers=admin)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["consents.0.granted"]
    assert state_counts() == before


def test_a_time_zone_is_one_the_schema_lists(client: TestClient, admin: dict[str, str]) -> None:
    schemas = _spec(client)["components"]["schemas"]
    for name in ("CustomerIn", "CustomerPatch"):
        zone = schemas[name]["properties"]["timezone"]
        listed = next(alt["enum"] for alt in zone["anyOf"] if "enum" in alt)
        assert "Europe/Kyiv" in listed
        assert "" not in listed
    body = {"identifiers": [{"kind": "cbs_id", "value": "CBS-ZONE-1"}], "timezone": ""}
    assert client.post("/v1/customers", json=body, headers=admin).status_code == 422
