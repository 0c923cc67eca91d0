"""A replay is answered as a replay, even when the copies arrive at the same moment.

Copies of one `event_id` posted concurrently get exactly one `201 accepted`; every other copy gets
`200 duplicate` with the same customer, and one row is stored - whether the copies share one group
commit, land in separate ones, reach two API processes (two writers) at once, or come in `:batch`
requests. The requests are sent together on one event loop (httpx's ASGI transport), so they really
overlap inside the group-commit writer's linger window.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container
from omnicrm.store import timeline
from omnicrm.store.tables import events

Headers = dict[str, str]
Json = dict[str, Any]
Send = tuple[FastAPI, str, Json, Headers]
ROUTES = {
    "/v1/events": ("tariff_page.visited", "web"),
    "/v1/interactions": ("crm.call.completed", "call_centre"),
}


def _app(container: Container, **settings: Any) -> FastAPI:
    """The API over the same database, with some settings changed (each app has its own writer);
    no decision worker inside: only the intake is under test."""
    changed = container.settings.model_copy(update={"decide_in_process": False, **settings})
    return create_app(dataclasses.replace(container, settings=changed))


@contextmanager
def _serving(*apps: FastAPI) -> Iterator[None]:
    """Runs each app's lifespan (its group-commit writer thread starts and stops with it)."""
    with ExitStack() as stack:
        for app in apps:
            stack.enter_context(TestClient(app))
        yield


def _commits(app: FastAPI) -> list[int]:
    """Grows by one each time the app's group-commit writer commits a batch."""
    writer = app.state.writer
    seen: list[int] = []
    after = writer.after_commit

    def counted() -> None:
        seen.append(1)
        after()

    writer.after_commit = counted
    return seen


def _at_once(sends: list[Send]) -> list[httpx.Response]:
    """Every request sent at the same moment, each to its app (over httpx's ASGI transport, no
    socket); the answers in the same order. An exception escaping an app comes back as the 500 a
    server would send."""

    async def run() -> list[httpx.Response]:
        async with AsyncExitStack() as stack:
            clients: dict[int, httpx.AsyncClient] = {}
            for app, *_ in sends:
                if id(app) not in clients:
                    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
                    clients[id(app)] = await stack.enter_async_context(client)
            posts = (clients[id(app)].post(path, json=body, headers=h) for app, path, body, h in sends)
            return list(await asyncio.gather(*posts))

    return asyncio.run(run())


def _rows(container: Container, event_id: str) -> int:
    with container.reader() as conn:
        query = select(func.count()).select_from(events).where(events.c.event_id == event_id)
        return int(conn.execute(query).scalar_one())


def _one_accepted(responses: list[httpx.Response]) -> Json:
    """Exactly one 201 accepted; every other answer is 200 duplicate with the same body. Returns
    the accepted body."""
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * (len(responses) - 1) + [201], [(r.status_code, r.text) for r in responses]
    accepted = next(r.json() for r in responses if r.status_code == 201)
    assert accepted["status"] == "accepted"
    for response in responses:
        if response.status_code == 200:
            assert response.json() == {**accepted, "status": "duplicate"}
    return dict(accepted)


@pytest.fixture
def both_read_first(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL, the first two transactions that look up event ids wait for each other there,
    so both find the event not stored yet before either writes it - what two API processes (or two
    concurrent batches) meet when their transactions overlap. On SQLite writers queue at the write
    gate (the second begins after the first commits): there is no such interleaving to force."""
    if container.engine.dialect.name != "postgresql":
        return
    barrier = threading.Barrier(2, timeout=10)
    calls = itertools.count()
    known = timeline.known_event_ids

    def after_both_read(conn: Connection, event_ids: Any) -> dict[str, str]:
        found = known(conn, event_ids)
        if next(calls) < 2:
            barrier.wait()
        return found

    monkeypatch.setattr(timeline, "known_event_ids", after_both_read)


@pytest.fixture
def customer_id(client: TestClient, admin: Headers) -> str:
    response = client.post(
        "/v1/customers", json={"identifiers": [{"kind": "cbs_id", "value": "CBS-R1"}]}, headers=admin
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _copy(make_event: Callable[..., Json], path: str, event_id: str, **fields: Any) -> Json:
    type_, source = ROUTES[path]
    return make_event(type_, event_id=event_id, source=source, **fields)


# ------------------------------------------------------------------------------ single-event routes


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-route"])
@pytest.mark.parametrize("path", list(ROUTES))
def test_copies_in_one_group_commit_get_one_accepted(
    container: Container,
    admin: Headers,
    make_event: Callable[..., Json],
    path: str,
    fast_path: bool,
) -> None:
    app = _app(container, ingest_linger_ms=300, intake_fast_path=fast_path)
    body = _copy(make_event, path, "replay-one-batch")
    with _serving(app):
        commits = _commits(app)
        responses = _at_once([(app, path, body, admin)] * 5)

    accepted = _one_accepted(responses)
    assert accepted["event_id"] == "replay-one-batch"
    assert len(commits) == 1  # the five copies did share one group commit
    assert _rows(container, "replay-one-batch") == 1


def test_copies_from_two_callers_in_one_group_commit_get_one_accepted(
    container: Container,
    headers_for: Callable[[str], Headers],
    make_event: Callable[..., Json],
) -> None:
    app = _app(container, ingest_linger_ms=300)
    body = make_event(event_id="replay-two-callers")
    callers = [headers_for("admin"), headers_for("integration")]
    with _serving(app):
        commits = _commits(app)
        responses = _at_once([(app, "/v1/events", body, callers[i % 2]) for i in range(6)])

    _one_accepted(responses)
    assert len(commits) == 1
    assert _rows(container, "replay-two-callers") == 1


@pytest.mark.parametrize("path", list(ROUTES))
def test_copies_in_separate_group_commits_get_one_accepted(
    container: Container, admin: Headers, make_event: Callable[..., Json], path: str
) -> None:
    app = _app(container, ingest_linger_ms=0, ingest_max_batch=1)
    body = _copy(make_event, path, "replay-separate")
    with _serving(app):
        commits = _commits(app)
        responses = _at_once([(app, path, body, admin)] * 5)

    _one_accepted(responses)
    assert len(commits) == 5  # one group commit per copy
    assert _rows(container, "replay-separate") == 1


@pytest.mark.parametrize("per_process", [1, 3])
@pytest.mark.parametrize("by", ["identifiers", "customer_id"])
@pytest.mark.usefixtures("both_read_first")
def test_copies_sent_to_two_api_processes_get_one_accepted(
    container: Container,
    admin: Headers,
    make_event: Callable[..., Json],
    customer_id: str,
    per_process: int,
    by: str,
) -> None:
    """Two apps on one database stand for two API processes: two writers, two transactions."""
    apps = [_app(container, ingest_linger_ms=200) for _ in range(2)]
    who = {"customer_id": customer_id} if by == "customer_id" else {"identifiers": {"cookie_id": "ck-r2"}}
    body = make_event(event_id="replay-two-processes", **who)
    with _serving(*apps):
        responses = _at_once([(app, "/v1/events", body, admin) for app in apps for _ in range(per_process)])

    accepted = _one_accepted(responses)
    if by == "customer_id":
        assert accepted["customer_id"] == customer_id
    assert _rows(container, "replay-two-processes") == 1


# ------------------------------------------------------------------------------------ batch routes


@pytest.mark.parametrize("path", list(ROUTES))
def test_a_batch_holding_one_event_id_twice_accepts_it_once(
    container: Container, admin: Headers, make_event: Callable[..., Json], path: str
) -> None:
    body = _copy(make_event, path, "replay-in-batch")
    other = _copy(make_event, path, "replay-in-batch-other")
    app = _app(container)
    with _serving(app):
        (response,) = _at_once([(app, f"{path}:batch", {"items": [body, other, body, body]}, admin)])

    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["duplicates"]) == (2, 2)
    assert [i["status"] for i in result["items"]] == ["accepted", "accepted", "duplicate", "duplicate"]
    assert len({result["items"][i]["customer_id"] for i in (0, 2, 3)}) == 1
    assert _rows(container, "replay-in-batch") == 1


@pytest.mark.parametrize("path", list(ROUTES))
@pytest.mark.usefixtures("both_read_first")
def test_concurrent_batches_sharing_an_event_id_store_it_once(
    container: Container, admin: Headers, make_event: Callable[..., Json], path: str
) -> None:
    shared = _copy(make_event, path, "replay-shared")
    own = [[_copy(make_event, path, f"replay-own-{b}-{i}") for i in range(3)] for b in range(2)]
    app = _app(container)
    with _serving(app):
        responses = _at_once([(app, f"{path}:batch", {"items": [shared, *own[b]]}, admin) for b in range(2)])

    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    results = [r.json() for r in responses]
    assert sorted(r["items"][0]["status"] for r in results) == ["accepted", "duplicate"]
    assert results[0]["items"][0]["customer_id"] == results[1]["items"][0]["customer_id"]
    assert sorted((r["accepted"], r["duplicates"]) for r in results) == [(3, 1), (4, 0)]
    assert all(i["status"] == "accepted" for r in results for i in r["items"][1:])
    assert _rows(container, "replay-shared") == 1
    with container.reader() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 7  # nothing lost


@pytest.mark.usefixtures("both_read_first")
def test_a_single_copy_and_a_batch_copy_at_once_store_it_once(
    container: Container, admin: Headers, make_event: Callable[..., Json]
) -> None:
    event = make_event(event_id="replay-single-and-batch")
    app = _app(container, ingest_linger_ms=50)
    with _serving(app):
        single, batch = _at_once(
            [(app, "/v1/events", event, admin), (app, "/v1/events:batch", {"items": [event]}, admin)]
        )

    assert single.status_code in (200, 201), single.text
    assert batch.status_code == 200, batch.text
    statuses = sorted([single.json()["status"], batch.json()["items"][0]["status"]])
    assert statuses == ["accepted", "duplicate"]
    assert single.status_code == (201 if single.json()["status"] == "accepted" else 200)
    assert single.json()["customer_id"] == batch.json()["items"][0]["customer_id"]
    assert _rows(container, "replay-single-and-batch") == 1
