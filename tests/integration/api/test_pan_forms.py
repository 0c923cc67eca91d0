"""Issue 18 point 2 over HTTP: every written form of a card number is refused, in bodies and in query
strings, and nothing is stored or echoed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

Headers = dict[str, str]
PAN_REFUSED = "urn:omnicrm:problem:card_number_refused"
_PHONE = '{"identifiers": [{"kind": "phone", "value": "+380671234567"}], '

FORMS = {
    "dots": "4111.1111.1111.1111",
    "slashes": "4111/1111/1111/1111",
    "underscores": "4111_1111_1111_1111",
    "double spaces": "4111  1111  1111  1111",
    "no-break spaces": "4111\u00a01111\u00a01111\u00a01111",
    "full-width digits": "４１１１１１１１１１１１１１１１",
    "mixed": "4111.1111-1111\u00a01111",
    "inside text": "Olena 5555/5555/5555/4444 Koval",
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_a_card_number_in_any_written_form_is_refused_and_nothing_is_stored(
    client: TestClient, admin: Headers, state_counts: Callable[[], dict[str, int]], form: str
) -> None:
    before = state_counts()
    body = {"identifiers": [{"kind": "phone", "value": "+380671234567"}], "first_name": form}
    response = client.post("/v1/customers", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == PAN_REFUSED
    assert state_counts() == before


@pytest.mark.parametrize(
    "raw",
    [
        _PHONE + '"first_name": "\\u0034111.1111.1111.1111"}',
        _PHONE + '"first_name": "4111\\/1111\\/1111\\/1111"}',
    ],
    ids=["unicode-escaped digit", "escaped slashes"],
)
def test_a_json_escaped_form_is_refused(
    client: TestClient, admin: Headers, state_counts: Callable[[], dict[str, int]], raw: str
) -> None:
    before = state_counts()
    headers = {**admin, "Content-Type": "application/json"}
    response = client.post("/v1/customers", content=raw.encode(), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == PAN_REFUSED
    assert state_counts() == before


def test_an_ordinary_name_with_numbers_is_still_accepted(client: TestClient, admin: Headers) -> None:
    body = {
        "identifiers": [{"kind": "phone", "value": "+380671234567"}],
        "first_name": "Olena",
        "last_name": "Koval 20.11.2026 067.123.45.67",
    }
    response = client.post("/v1/customers", json=body, headers=admin)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "value", ["4111111111111111", "4111.1111.1111.1111", "４１１１１１１１１１１１１１１１"]
)
def test_a_card_number_in_a_query_string_is_refused_and_not_echoed(
    client: TestClient, admin: Headers, value: str
) -> None:
    response = client.get("/v1/customers/lookup", params={"kind": "account", "value": value}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == PAN_REFUSED
    assert "1111" not in response.text
    assert "１１１１" not in response.text


def test_an_ordinary_query_string_still_works(client: TestClient, admin: Headers) -> None:
    response = client.get(
        "/v1/customers/lookup", params={"kind": "phone", "value": "+380671234567"}, headers=admin
    )
    assert response.status_code == 404, response.text
    assert response.json()["type"] != PAN_REFUSED


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/4111111111111111",
        "/v1/customers/4111%201111%201111%201111/timeline",
        "/v1/campaigns/%EF%BC%94111111111111111",  # a full-width first digit, percent-encoded
        "/v1/users/5555555555554444/tokens",
    ],
)
def test_a_card_number_in_the_url_path_is_refused_and_not_echoed(
    client: TestClient, admin: Headers, path: str
) -> None:
    response = client.get(path, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == PAN_REFUSED
    assert "1111" not in response.text
    assert "4444" not in response.text


def test_an_ordinary_path_with_digits_still_works(client: TestClient, admin: Headers) -> None:
    response = client.get("/v1/customers/01J0000000000000000000000", headers=admin)
    assert response.status_code == 404, response.text
    assert response.json()["type"] != PAN_REFUSED
