"""Issue 18, point 1: a large body is refused before it is read, and the caller is checked first.

Bodies are sent as generators so the test can count how much of a body the service pulled: the
TestClient hands the app one chunk per `receive()`, so a body refused unread leaves the generator
(almost) untouched."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container
from omnicrm.store.tables import customers, events

Headers = dict[str, str]
CHUNK = 64 * 1024


class Body:
    """A request body of `size` bytes in 64 KiB chunks that counts the chunks the server pulled."""

    def __init__(self, size: int, head: bytes = b'{"username": "x", "password": "') -> None:
        self.size, self.head, self.pulled = size, head, 0

    @property
    def chunks(self) -> int:
        return -(-self.size // CHUNK)

    async def receive(self) -> dict[str, Any]:
        self.pulled += 1
        if self.pulled > self.chunks:
            return {"type": "http.disconnect"}
        head = self.head if self.pulled == 1 else b""
        return {
            "type": "http.request",
            "body": head + b"a" * (CHUNK - len(head)),
            "more_body": self.pulled < self.chunks,
        }


def post(app: Any, path: str, body: Body, headers: Headers, *, declare_length: bool = False) -> Answer:
    """POST `body` to the ASGI `app` the way a server streams it: one chunk per `receive()`.
    Without `declare_length` the body is chunked (no Content-Length to trust)."""
    raw = [
        (k.lower().encode(), v.encode()) for k, v in {"content-type": "application/json", **headers}.items()
    ]
    if declare_length:
        raw.append((b"content-length", str(body.size).encode()))
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, body.receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, content)


@dataclasses.dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return orjson.loads(self.content)


@pytest.fixture
def app(container: Container) -> Any:
    """The API as an ASGI app, called directly (no lifespan: nothing here reaches the writer)."""
    return create_app(container)


@pytest.fixture
def small_limits(container: Container) -> Iterator[TestClient]:
    """The API with a 64 KiB body limit and a 256 KiB one for `…:batch` routes."""
    settings = container.settings.model_copy(
        update={"max_body_bytes": 64 * 1024, "max_batch_body_bytes": 256 * 1024}
    )
    with TestClient(create_app(dataclasses.replace(container, settings=settings))) as test_client:
        yield test_client


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_a_huge_login_body_is_refused_with_413_without_being_read(app: Any) -> None:
    body = Body(20 * 1024 * 1024)  # 20 MiB, chunked: no Content-Length to trust
    response = post(app, "/v1/auth/login", body, {})
    problem = _problem(response, 413)
    assert "1048576" in problem["detail"] or "1 MiB" in problem["detail"]
    # The stream is cut as soon as it passes the 1 MiB limit: 17 chunks of 64 KiB, not 320.
    assert body.pulled <= 1024 * 1024 // CHUNK + 2


def test_a_declared_content_length_over_the_limit_is_refused_before_any_byte(app: Any) -> None:
    body = Body(2 * 1024 * 1024)
    response = post(app, "/v1/auth/login", body, {}, declare_length=True)
    _problem(response, 413)
    assert body.pulled <= 1


@pytest.mark.parametrize("path", ["/v1/events", "/v1/events:batch", "/v1/customers", "/v1/campaigns"])
def test_a_request_without_token_is_refused_before_its_body_is_read(app: Any, path: str) -> None:
    body = Body(10 * 1024 * 1024, head=b'{"items": ["')
    response = post(app, path, body, {})
    _problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert body.pulled <= 1, f"{body.pulled} of {body.chunks} chunks read before the 401"


def test_a_wrong_role_is_refused_before_the_body_is_read(
    app: Any, headers_for: Callable[[str], Headers], count: Callable[[Any], int]
) -> None:
    body = Body(5 * 1024 * 1024, head=b'{"items": ["')
    response = post(app, "/v1/events:batch", body, headers_for("auditor"))
    _problem(response, 403)
    assert body.pulled <= 1
    assert count(events) == 0


def test_the_allowed_caller_still_gets_413_for_an_oversized_body(
    small_limits: TestClient, admin: Headers, count: Callable[[Any], int]
) -> None:
    person = {"identifiers": [{"kind": "cbs_id", "value": "CIF-1"}], "first_name": "x" * 100_000}
    response = small_limits.post("/v1/customers", json=person, headers=admin)
    problem = _problem(response, 413)
    assert "65536" in problem["detail"]
    assert count(customers) == 0


def test_batch_routes_take_more_than_the_single_body_limit(
    small_limits: TestClient,
    admin: Headers,
    make_event: Callable[..., dict[str, Any]],
    count: Callable[[Any], int],
) -> None:
    items = [make_event(event_id=f"evt-{i:04d}") for i in range(400)]
    payload = orjson.dumps({"items": items})
    assert 64 * 1024 < len(payload) < 256 * 1024
    response = small_limits.post(
        "/v1/events:batch", content=payload, headers={**admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert count(events) == 400
    too_big = orjson.dumps({"items": items * 5})
    assert len(too_big) > 256 * 1024
    response = small_limits.post(
        "/v1/events:batch", content=too_big, headers={**admin, "Content-Type": "application/json"}
    )
    _problem(response, 413)
    assert count(events) == 400


def test_a_single_event_over_the_limit_is_refused_on_the_fast_path(
    small_limits: TestClient, admin: Headers, make_event: Callable[..., dict[str, Any]]
) -> None:
    event = make_event(event_id="evt-big")
    event["attributes"] = {"note": "y" * 70_000}
    response = small_limits.post("/v1/events", json=event, headers=admin)
    _problem(response, 413)


def test_bodies_within_the_limit_are_unchanged(
    client: TestClient, admin: Headers, make_event: Callable[..., dict[str, Any]]
) -> None:
    response = client.post("/v1/events", json=make_event(event_id="evt-ok"), headers=admin)
    assert response.status_code == 201, response.text
    response = client.post("/v1/auth/login", json={"username": "nobody", "password": "wrong-password"})
    _problem(response, 401)
