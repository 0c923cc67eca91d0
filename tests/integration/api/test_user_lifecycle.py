"""Users have a lifecycle: an admin deactivates one (route or CLI), and every way in is shut at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import Result

from omnicrm.bootstrap import Container
from omnicrm.services.access import auth
from omnicrm.store.tables import audit_log

Headers = dict[str, str]
PASSWORD = "correct horse battery"


def _user(client: TestClient, admin: Headers, name: str = "clerk-1", role: str = "operator") -> str:
    body = {"username": name, "role": role, "password": PASSWORD}
    response = client.post("/v1/users", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return name


def _bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


def _login(client: TestClient, name: str, password: str = PASSWORD) -> tuple[int, object]:
    response = client.post("/v1/auth/login", json={"username": name, "password": password})
    return response.status_code, response.json()


def _audited(container: Container, action: str) -> list[tuple[str, str]]:
    with container.reader() as conn:
        query = select(audit_log.c.actor, audit_log.c.target).where(audit_log.c.action == action)
        return [(r.actor, r.target) for r in conn.execute(query.order_by(audit_log.c.id))]


def test_a_deactivated_users_tokens_and_login_are_refused_and_it_is_audited_once(
    client: TestClient, admin: Headers, container: Container
) -> None:
    user = _user(client, admin)
    issued = client.post(f"/v1/users/{user}/tokens", json={"name": "api"}, headers=admin).json()["token"]
    status, body = _login(client, user)
    assert status == 200
    assert isinstance(body, dict)
    logged_in = body["token"]
    for token in (issued, logged_in):  # both cached by this process now
        assert client.get("/v1/me", headers=_bearer(token)).status_code == 200
    wrong = _login(client, user, "not the password at all")
    assert wrong[0] == 401

    first = client.post(f"/v1/users/{user}:deactivate", headers=admin)
    assert first.status_code == 204, first.text
    for token in (issued, logged_in):
        assert client.get("/v1/me", headers=_bearer(token)).status_code == 401
    assert _login(client, user) == wrong  # exactly like a wrong password
    items = client.get(f"/v1/users/{user}/tokens", headers=admin).json()["items"]
    assert len(items) == 2
    assert all(i["revoked_at"] is not None for i in items)
    admin_name = client.get("/v1/me", headers=admin).json()["username"]
    assert _audited(container, "user.deactivated") == [(admin_name, user)]

    again = client.post(f"/v1/users/{user}:deactivate", headers=admin)
    assert again.status_code == 204, again.text
    assert _audited(container, "user.deactivated") == [(admin_name, user)]  # nothing changed


def test_a_deactivated_user_gets_no_new_token(client: TestClient, admin: Headers) -> None:
    user = _user(client, admin)
    assert client.post(f"/v1/users/{user}:deactivate", headers=admin).status_code == 204
    response = client.post(f"/v1/users/{user}/tokens", json={"name": "late"}, headers=admin)
    assert response.status_code == 409, response.text
    assert "ocrm_" not in response.text
    assert client.get(f"/v1/users/{user}/tokens", headers=admin).json()["items"] == []


def test_an_unknown_user_is_404_and_nothing_is_audited(
    client: TestClient, admin: Headers, audit_actions: Callable[[str], int]
) -> None:
    response = client.post("/v1/users/nobody:deactivate", headers=admin)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert audit_actions("user.deactivated") == 0


def test_an_admin_cannot_deactivate_themselves(
    client: TestClient, admin: Headers, audit_actions: Callable[[str], int]
) -> None:
    me = client.get("/v1/me", headers=admin).json()["username"]
    response = client.post(f"/v1/users/{me}:deactivate", headers=admin)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/me", headers=admin).status_code == 200
    assert audit_actions("user.deactivated") == 0


@pytest.mark.parametrize("role", ["operator", "marketer", "compliance", "auditor", "integration"])
def test_only_admins_deactivate(
    client: TestClient,
    admin: Headers,
    headers_for: Callable[[str], Headers],
    audit_actions: Callable[[str], int],
    role: str,
) -> None:
    user = _user(client, admin)
    assert client.post(f"/v1/users/{user}:deactivate", headers=headers_for(role)).status_code == 403
    assert client.post(f"/v1/users/{user}:deactivate").status_code == 401
    assert audit_actions("user.deactivated") == 0
    assert _login(client, user)[0] == 200


def test_the_openapi_lists_the_deactivate_route_as_needing_the_token(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/users/{username}:deactivate"]["post"]
    assert operation["security"]


# The CLI: `omnicrm users tokens|revoke|deactivate`, against a temporary SQLite file.


def _valid(container: Container, token: str) -> bool:
    with container.reader() as conn:
        return auth.authenticate(conn, token, datetime.now(UTC)) is not None


def _token_ids(container: Container, user: str) -> dict[str, int]:
    with container.reader() as conn:
        return {t["name"]: t["id"] for t in auth.list_tokens(conn, user)}


def test_cli_lists_tokens_without_the_token_or_its_hash(
    run: Callable[..., Result], cli_container: Callable[[], Container]
) -> None:
    assert run("users", "add", "x", "--role", "integration").exit_code == 0
    raw = run("users", "token", "x", "--name", "first", "--days", "7").output.strip()
    assert raw.startswith("ocrm_")
    result = run("users", "tokens", "x")
    assert result.exit_code == 0, result.output
    token_id = _token_ids(cli_container(), "x")["first"]
    lines = result.output.splitlines()
    assert lines[0].split() == ["id", "name", "created", "expires", "revoked"]
    assert lines[1].split()[:2] == [str(token_id), "first"]
    assert lines[1].split()[-1] == "-"  # not revoked
    assert raw not in result.output
    assert auth.token_hash(raw) not in result.output


def test_cli_revokes_a_token_once_and_audits_it(
    run: Callable[..., Result], cli_container: Callable[[], Container]
) -> None:
    assert run("users", "add", "x", "--role", "integration").exit_code == 0
    doomed = run("users", "token", "x", "--name", "doomed").output.strip()
    kept = run("users", "token", "x", "--name", "kept").output.strip()
    container = cli_container()
    token_id = _token_ids(container, "x")["doomed"]

    result = run("users", "revoke", "x", str(token_id))
    assert result.exit_code == 0, result.output
    assert (_valid(container, doomed), _valid(container, kept)) == (False, True)
    assert _audited(container, "token.revoked") == [("cli", "x")]
    assert run("users", "revoke", "x", str(token_id)).exit_code == 0
    assert _audited(container, "token.revoked") == [("cli", "x")]
    listed = run("users", "tokens", "x").output.splitlines()
    assert next(line for line in listed if line.split()[1] == "doomed").split()[-1] != "-"


def test_cli_deactivates_a_user_once_and_audits_it(
    run: Callable[..., Result], cli_container: Callable[[], Container]
) -> None:
    assert run("users", "add", "x", "--role", "integration").exit_code == 0
    token = run("users", "token", "x").output.strip()
    container = cli_container()
    assert _valid(container, token)

    result = run("users", "deactivate", "x")
    assert result.exit_code == 0, result.output
    assert not _valid(container, token)
    assert _audited(container, "user.deactivated") == [("cli", "x")]
    assert run("users", "deactivate", "x").exit_code == 0
    assert _audited(container, "user.deactivated") == [("cli", "x")]
    late = run("users", "token", "x")
    assert late.exit_code == 1
    assert "ocrm_" not in late.output


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("users", "tokens", "nobody"), 1),
        (("users", "revoke", "nobody", "1"), 1),
        (("users", "revoke", "x", "999"), 1),
        (("users", "deactivate", "nobody"), 1),
        (("users", "revoke", "x", "one"), 2),
        (("users", "revoke", "x", "0"), 2),
        (("users", "revoke", "x", str(2**63)), 2),
        (("users", "revoke", "x"), 2),
        (("users", "tokens"), 2),
        (("users", "deactivate"), 2),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v),
)
def test_cli_refusals_and_usage_errors(
    run: Callable[..., Result], cli_container: Callable[[], Container], args: tuple[str, ...], code: int
) -> None:
    assert run("users", "add", "x", "--role", "integration").exit_code == 0
    result = run(*args)
    assert result.exit_code == code, result.output
    if code == 1:
        assert "does not exist" in result.output or "has no token" in result.output
    container = cli_container()
    assert _audited(container, "token.revoked") == []
    assert _audited(container, "user.deactivated") == []
