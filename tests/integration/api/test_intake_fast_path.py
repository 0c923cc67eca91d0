"""The intake fast path (`api/intake.py`) answers POST /v1/events and /v1/interactions exactly as
their FastAPI routes do: the same requests are sent both ways and the answers compared."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.requests import HTTPConnection

from omnicrm.api import deps
from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container

Headers = dict[str, str]
Json = dict[str, Any]
VISA = "4111 1111 1111 1111"


@pytest.fixture
def clients(container: Container) -> Iterator[dict[bool, TestClient]]:
    """{True: the app with the fast path, False: the same app answering with its FastAPI routes}."""
    slow = dataclasses.replace(
        container, settings=container.settings.model_copy(update={"intake_fast_path": False})
    )
    with TestClient(create_app(container)) as fast_client, TestClient(create_app(slow)) as slow_client:
        yield {True: fast_client, False: slow_client}


@pytest.fixture
def through_fastapi(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the requests FastAPI's own security dependency saw (the fast path never calls it)."""
    seen: list[int] = []
    solve = deps.Caller.__call__

    async def counted(self: deps.Caller, request: HTTPConnection) -> Any:  # FastAPI reads the type
        seen.append(1)
        return await solve(self, request)

    monkeypatch.setattr(deps.Caller, "__call__", counted)
    return seen


def _requests(
    make_event: Callable[..., Json], token_for: Callable[[str], str], fast: bool, customer: str
) -> list[tuple[str, str, Headers, bytes]]:
    """(label, path, headers, body) of one round; event ids differ per round, all else is the same."""
    writer = {"Authorization": f"Bearer {token_for('integration')}"}
    auditor = {"Authorization": f"Bearer {token_for('auditor')}"}
    suffix = "fast" if fast else "slow"
    event = make_event(event_id=f"fp-{suffix}", customer_id=customer)
    call = make_event(
        "crm.call.completed", event_id=f"fp-call-{suffix}", source="call_centre", customer_id=customer
    )
    return [
        ("accepted", "/v1/events", writer, orjson.dumps(event)),
        ("replayed", "/v1/events", writer, orjson.dumps(event)),
        ("interaction", "/v1/interactions", writer, orjson.dumps(call)),
        ("interaction as event", "/v1/events", writer, orjson.dumps({**call, "event_id": f"fp-x-{suffix}"})),
        (
            "lower-case scheme",
            "/v1/events",
            {"Authorization": writer["Authorization"].replace("Bearer", "bearer")},
            orjson.dumps({**event, "event_id": f"fp-lc-{suffix}"}),
        ),
        ("no token", "/v1/events", {}, orjson.dumps(event)),
        ("other scheme", "/v1/events", {"Authorization": "Basic abc"}, orjson.dumps(event)),
        ("unknown token", "/v1/events", {"Authorization": "Bearer ocrm_nope"}, orjson.dumps(event)),
        ("role without the right", "/v1/events", auditor, orjson.dumps(event)),
        ("not JSON", "/v1/events", writer, b"{oops"),
        ("not an object", "/v1/events", writer, b"[1, 2]"),
        (
            "unknown type",
            "/v1/events",
            writer,
            orjson.dumps({**event, "type": "no.such", "event_id": f"fp-t-{suffix}"}),
        ),
        (
            "extra field",
            "/v1/events",
            writer,
            orjson.dumps({**event, "extra": 1, "event_id": f"fp-e-{suffix}"}),
        ),
        ("card number", "/v1/events", writer, orjson.dumps({**event, "attributes": {"page": VISA}})),
        (
            "unknown customer",
            "/v1/events",
            writer,
            orjson.dumps(make_event(event_id=f"fp-u-{suffix}", customer_id="01NOSUCHCUSTOMER0000000000")),
        ),
    ]


def _answer(
    client: TestClient, path: str, headers: Headers, body: bytes
) -> tuple[int, Any, str | None, str | None]:
    response = client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
    payload = response.json()
    if isinstance(payload, dict) and "event_id" in payload:
        payload = {**payload, "event_id": payload["event_id"].replace("-fast", "").replace("-slow", "")}
    return (
        response.status_code,
        payload,
        response.headers.get("content-type"),
        response.headers.get("www-authenticate"),
    )


def test_the_fast_path_answers_as_the_routes_do(
    clients: dict[bool, TestClient],
    through_fastapi: list[int],
    make_event: Callable[..., Json],
    token_for: Callable[[str], str],
    create_customer: Callable[..., Json],
) -> None:
    customer = create_customer()["id"]
    answers: dict[bool, dict[str, Any]] = {}
    for fast in (True, False):
        before = len(through_fastapi)
        answers[fast] = {
            label: _answer(clients[fast], path, headers, body)
            for label, path, headers, body in _requests(make_event, token_for, fast, customer)
        }
        assert (len(through_fastapi) - before == 0) is fast  # the fast path never reached FastAPI's routes

    assert answers[True] == answers[False]
    statuses = {label: answer[0] for label, answer in answers[True].items()}
    assert statuses == {
        "accepted": 201,
        "replayed": 200,
        "interaction": 201,
        "interaction as event": 422,
        "lower-case scheme": 201,
        "no token": 401,
        "other scheme": 401,
        "unknown token": 401,
        "role without the right": 403,
        "not JSON": 422,
        "not an object": 422,
        "unknown type": 422,
        "extra field": 422,
        "card number": 422,
        "unknown customer": 422,
    }
    assert answers[True]["accepted"][1] == {"event_id": "fp", "status": "accepted", "customer_id": customer}
    assert answers[True]["no token"][3] == "Bearer"


def test_other_routes_and_methods_go_on_to_fastapi(
    clients: dict[bool, TestClient], token_for: Callable[[str], str]
) -> None:
    headers = {"Authorization": f"Bearer {token_for('integration')}"}
    fast = clients[True]
    assert fast.get("/v1/events", headers=headers).status_code == 405
    assert fast.post("/v1/events:batch", json={"items": []}, headers=headers).status_code == 422
    assert fast.get("/v1/me", headers=headers).json()["role"] == "integration"
