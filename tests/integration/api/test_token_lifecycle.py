"""API tokens have a lifecycle: a bounded time to live, a listing and a revocation (admin only)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, select
from typer.testing import Result

from omnicrm.bootstrap import Container
from omnicrm.store.tables import api_tokens, audit_log

Headers = dict[str, str]
BAD_TTLS = [0, -3, 366, 1_000_000_000, 2.5, "ten", None, True]


def _user(client: TestClient, admin: Headers, name: str = "svc-1") -> str:
    response = client.post("/v1/users", json={"username": name, "role": "integration"}, headers=admin)
    assert response.status_code == 201, response.text
    return name


def _rows(container: Container, table: Table) -> int:
    with container.reader() as conn:
        return len(conn.execute(select(table.c.id)).all())


def _expires(container: Container, name: str) -> datetime | None:
    with container.reader() as conn:
        query = select(api_tokens.c.expires_at).where(api_tokens.c.name == name)
        value: datetime | None = conn.execute(query).scalar_one()
    return value


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=[repr(t) for t in BAD_TTLS])
def test_a_bad_ttl_is_refused_and_nothing_is_written(
    client: TestClient, admin: Headers, container: Container, ttl: object
) -> None:
    user = _user(client, admin)
    tokens, audits = _rows(container, api_tokens), _rows(container, audit_log)
    response = client.post(f"/v1/users/{user}/tokens", json={"name": "bad", "ttl_days": ttl}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["ttl_days"]
    assert "ocrm_" not in response.text
    assert (_rows(container, api_tokens), _rows(container, audit_log)) == (tokens, audits)


@pytest.mark.parametrize(("ttl", "days"), [(None, 90), (1, 1), (365, 365)], ids=["default", "1", "365"])
def test_a_token_expires_after_its_ttl(
    client: TestClient, admin: Headers, container: Container, ttl: int | None, days: int
) -> None:
    user = _user(client, admin)
    body: dict[str, object] = {"name": "ok"} if ttl is None else {"name": "ok", "ttl_days": ttl}
    before = datetime.now(UTC)
    response = client.post(f"/v1/users/{user}/tokens", json=body, headers=admin)
    assert response.status_code == 201, response.text
    expires = _expires(container, "ok")
    assert expires is not None
    assert before + timedelta(days=days) <= expires <= datetime.now(UTC) + timedelta(days=days)


def test_the_openapi_states_the_ttl_range_and_default(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["TokenIn"]["properties"]["ttl_days"]
    assert (schema["minimum"], schema["maximum"], schema["default"]) == (1, 365, 90)
    assert "90" in schema["description"]


def test_tokens_are_listed_without_their_hash(client: TestClient, admin: Headers) -> None:
    user = _user(client, admin)
    issued = client.post(f"/v1/users/{user}/tokens", json={"name": "first", "ttl_days": 7}, headers=admin)
    assert issued.status_code == 201
    listed = client.get(f"/v1/users/{user}/tokens", headers=admin)
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [i["name"] for i in items] == ["first"]
    assert set(items[0]) == {"id", "name", "created_at", "expires_at", "revoked_at"}
    assert items[0]["revoked_at"] is None
    assert "hash" not in listed.text
    assert issued.json()["token"] not in listed.text


def test_a_revoked_token_is_refused_at_once_and_the_revocation_is_audited(
    client: TestClient, admin: Headers, audit_actions: Callable[[str], int]
) -> None:
    user = _user(client, admin)
    raw = client.post(f"/v1/users/{user}/tokens", json={"name": "doomed"}, headers=admin).json()["token"]
    keep = client.post(f"/v1/users/{user}/tokens", json={"name": "kept"}, headers=admin).json()["token"]
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {raw}"}).status_code == 200  # cached now
    items = client.get(f"/v1/users/{user}/tokens", headers=admin).json()["items"]
    doomed = next(i["id"] for i in items if i["name"] == "doomed")

    revoked = client.delete(f"/v1/users/{user}/tokens/{doomed}", headers=admin)
    assert revoked.status_code == 204, revoked.text
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {raw}"}).status_code == 401
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {keep}"}).status_code == 200
    assert audit_actions("token.revoked") == 1
    listed = client.get(f"/v1/users/{user}/tokens", headers=admin).json()["items"]
    assert next(i for i in listed if i["id"] == doomed)["revoked_at"] is not None

    again = client.delete(f"/v1/users/{user}/tokens/{doomed}", headers=admin)
    assert again.status_code == 204
    assert audit_actions("token.revoked") == 1  # nothing changed, nothing audited


def test_revoking_needs_the_right_user_and_an_existing_token(
    client: TestClient, admin: Headers, audit_actions: Callable[[str], int]
) -> None:
    user, other = _user(client, admin, "svc-a"), _user(client, admin, "svc-b")
    client.post(f"/v1/users/{user}/tokens", json={"name": "t"}, headers=admin)
    token_id = client.get(f"/v1/users/{user}/tokens", headers=admin).json()["items"][0]["id"]
    assert client.delete(f"/v1/users/{other}/tokens/{token_id}", headers=admin).status_code == 404
    assert client.delete(f"/v1/users/{user}/tokens/{token_id + 1000}", headers=admin).status_code == 404
    assert client.delete(f"/v1/users/nobody/tokens/{token_id}", headers=admin).status_code == 404
    for bad in ("0", "x", str(2**63)):
        assert client.delete(f"/v1/users/{user}/tokens/{bad}", headers=admin).status_code == 422
    assert client.get("/v1/users/nobody/tokens", headers=admin).status_code == 404
    assert audit_actions("token.revoked") == 0


@pytest.mark.parametrize("role", ["operator", "marketer", "compliance", "auditor", "integration"])
def test_only_admins_list_and_revoke_tokens(
    client: TestClient, admin: Headers, headers_for: Callable[[str], Headers], role: str
) -> None:
    user = _user(client, admin)
    client.post(f"/v1/users/{user}/tokens", json={"name": "t"}, headers=admin)
    token_id = client.get(f"/v1/users/{user}/tokens", headers=admin).json()["items"][0]["id"]
    caller = headers_for(role)
    assert client.get(f"/v1/users/{user}/tokens", headers=caller).status_code == 403
    assert client.delete(f"/v1/users/{user}/tokens/{token_id}", headers=caller).status_code == 403
    assert client.get(f"/v1/users/{user}/tokens").status_code == 401


# The CLI: `omnicrm users token NAME --days N`, against a temporary SQLite file.


@pytest.mark.parametrize("days", ["0", "-3", "366", "1000000000", "ten"])
def test_cli_refuses_a_bad_days_value_and_writes_nothing(
    run: Callable[..., Result], cli_container: Callable[[], Container], days: str
) -> None:
    assert run("users", "add", "x", "--role", "integration").exit_code == 0
    container = cli_container()
    tokens, audits = _rows(container, api_tokens), _rows(container, audit_log)
    result = run("users", "token", "x", "--days", days)
    assert result.exit_code == 2, result.output
    assert "--days" in result.output
    assert "ocrm_" not in result.output
    assert (_rows(container, api_tokens), _rows(container, audit_log)) == (tokens, audits)


@pytest.mark.parametrize(("args", "days"), [((), 90), (("--days", "1"), 1), (("--days", "365"), 365)])
def test_cli_token_expires_after_its_days(
    run: Callable[..., Result], cli_container: Callable[[], Container], args: tuple[str, ...], days: int
) -> None:
    assert run("users", "add", "x", "--role", "integration").exit_code == 0
    before = datetime.now(UTC)
    result = run("users", "token", "x", "--name", "cli-t", *args)
    assert result.exit_code == 0, result.output
    expires = _expires(cli_container(), "cli-t")
    assert expires is not None
    assert before + timedelta(days=days) <= expires <= datetime.now(UTC) + timedelta(days=days)


def test_cli_help_states_the_days_range_and_default(run: Callable[..., Result]) -> None:
    text = " ".join(run("users", "token", "--help").output.split())
    assert "1-365" in text or "1<=x<=365" in text
    assert "90" in text
