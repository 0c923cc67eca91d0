"""Issue 18, point 4: logins are throttled per user name and per client address.

After a few failures a name (or an address) is locked: `429` problem+json with `Retry-After`, before
any password hashing, the lock growing with every further failure. The limits come from settings,
set low here so that few (slow, Argon2) attempts are needed; expiry is simulated by moving the
stored lock into the past rather than by waiting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from omnicrm.bootstrap import Container
from omnicrm.store.tables import audit_log, login_throttle

Headers = dict[str, str]
PASSWORD = "correct horse battery"
WRONG = "not the password at all"
HOME = "203.0.113.7"
ELSEWHERE = "198.51.100.20"
PROBLEM = "application/problem+json"


@pytest.fixture
def limits(container: Container, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """limits(**settings) -> sets login settings for this test; low limits by default."""

    def set_limits(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setattr(container.settings, name, value)

    set_limits(
        login_max_failures_per_name=2,
        login_max_failures_per_address=6,
        login_lock_seconds=60.0,
        login_lock_max_seconds=3600.0,
        login_forget_seconds=3600.0,
        trusted_proxies=[],
    )
    return set_limits


@pytest.fixture
def from_address(client: TestClient) -> Iterator[Callable[[str], TestClient]]:
    """from_address(ip) -> a client of the same app whose requests come from `ip`."""
    made: list[TestClient] = []

    def make(address: str) -> TestClient:
        made.append(TestClient(client.app, client=(address, 50000)))
        return made[-1]

    yield make
    for other in made:
        other.close()


def _user(client: TestClient, admin: Headers, name: str = "clerk-1") -> str:
    body = {"username": name, "role": "operator", "password": PASSWORD}
    response = client.post("/v1/users", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return name


def _login(client: TestClient, name: str, password: str = PASSWORD, **headers: str) -> Any:
    return client.post("/v1/auth/login", json={"username": name, "password": password}, headers=headers)


def _retry_after(response: Any) -> int:
    """The wait a 429 asks for, after checking that it is a well-formed problem."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == 429
    assert body["type"] == "urn:omnicrm:problem:too_many_requests"
    assert "token" not in body
    return int(response.headers["Retry-After"])


def _expire_locks(container: Container) -> None:
    """Move every stored lock into the past, as if its time had run out."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with container.engine.begin() as conn:
        conn.execute(
            update(login_throttle).where(login_throttle.c.locked_until.is_not(None)).values(locked_until=past)
        )


def _locked_out(container: Container) -> list[tuple[str, str | None, dict[str, Any]]]:
    with container.reader() as conn:
        query = select(audit_log.c.actor, audit_log.c.target, audit_log.c.details).where(
            audit_log.c.action == "auth.locked_out"
        )
        return [(r.actor, r.target, r.details) for r in conn.execute(query.order_by(audit_log.c.id))]


def _stored(container: Container) -> list[str]:
    """Every value the throttle table and the audit log hold, as text."""
    with container.reader() as conn:
        rows = [*conn.execute(select(login_throttle)), *conn.execute(select(audit_log))]
    return [str(value) for row in rows for value in row]


def test_forty_wrong_passwords_then_the_right_one_is_429_with_retry_after(
    client: TestClient, admin: Headers, limits: Callable[..., None], from_address: Callable[[str], TestClient]
) -> None:
    user = _user(client, admin)
    home = from_address(HOME)
    statuses = [_login(home, user, WRONG).status_code for _ in range(40)]
    assert statuses == [401, 401] + [429] * 38
    right = _login(home, user)
    assert 50 < _retry_after(right) <= 60


def test_the_lock_doubles_with_each_further_failure_up_to_the_cap(
    client: TestClient,
    admin: Headers,
    container: Container,
    limits: Callable[..., None],
    from_address: Callable[[str], TestClient],
) -> None:
    limits(login_lock_max_seconds=200.0)
    user = _user(client, admin)
    home = from_address(HOME)
    waits = []
    for failures in (2, 1, 1):  # the first lock after two failures, each later one after one more
        assert [_login(home, user, WRONG).status_code for _ in range(failures)] == [401] * failures
        waits.append(_retry_after(_login(home, user, WRONG)))
        _expire_locks(container)
    assert 50 < waits[0] <= 60
    assert 110 < waits[1] <= 120
    assert 190 < waits[2] <= 200  # 240 capped


def test_a_locked_name_is_locked_from_every_address(
    client: TestClient, admin: Headers, limits: Callable[..., None], from_address: Callable[[str], TestClient]
) -> None:
    user = _user(client, admin)
    attacker = from_address(HOME)
    assert [_login(attacker, user, WRONG).status_code for _ in range(2)] == [401, 401]
    _retry_after(_login(from_address(ELSEWHERE), user))


def test_many_names_from_one_address_are_throttled_per_address(
    client: TestClient,
    admin: Headers,
    container: Container,
    limits: Callable[..., None],
    from_address: Callable[[str], TestClient],
) -> None:
    limits(login_max_failures_per_address=3)
    user = _user(client, admin)
    sprayer = from_address(HOME)
    assert [_login(sprayer, f"guess-{i}", WRONG).status_code for i in range(3)] == [401, 401, 401]
    _retry_after(_login(sprayer, "guess-3", WRONG))
    _retry_after(_login(sprayer, user))  # the address is locked, whoever it names
    assert _login(from_address(ELSEWHERE), user).status_code == 200  # other addresses are not
    [(actor, target, details)] = _locked_out(container)
    assert (actor, target) == ("guess-2", HOME)
    assert details["attempts"] == 3
    assert details["address"] == HOME


def test_an_unknown_user_is_answered_exactly_like_a_wrong_password_even_when_locked(
    client: TestClient, admin: Headers, limits: Callable[..., None], from_address: Callable[[str], TestClient]
) -> None:
    user = _user(client, admin)
    answers: dict[str, list[Any]] = {}
    for name, address in ((user, HOME), ("nobody-here", ELSEWHERE)):
        source = from_address(address)
        answers[name] = [_login(source, name, WRONG) for _ in range(3)]
    for known, unknown in zip(answers[user], answers["nobody-here"], strict=True):
        assert known.status_code == unknown.status_code
        assert known.content == unknown.content
        assert known.headers["content-type"] == unknown.headers["content-type"] == PROBLEM
        assert known.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")
    assert [a.status_code for a in answers[user]] == [401, 401, 429]


def test_the_lock_out_is_audited_once_and_failed_attempts_are_not(
    client: TestClient,
    admin: Headers,
    container: Container,
    limits: Callable[..., None],
    from_address: Callable[[str], TestClient],
) -> None:
    user = _user(client, admin)
    home = from_address(HOME)
    for _ in range(10):
        _login(home, user, WRONG)
    [(actor, target, details)] = _locked_out(container)
    assert (actor, target) == (user, user)
    assert details == {"locked": "name", "attempts": 2, "address": HOME, "seconds": 60}
    with container.reader() as conn:
        actions = set(conn.execute(select(audit_log.c.action)).scalars())
    assert "login.failed" not in actions


def test_after_the_lock_expires_the_right_password_works_and_resets_the_count(
    client: TestClient,
    admin: Headers,
    container: Container,
    limits: Callable[..., None],
    from_address: Callable[[str], TestClient],
) -> None:
    user = _user(client, admin)
    home = from_address(HOME)
    assert [_login(home, user, WRONG).status_code for _ in range(3)] == [401, 401, 429]
    _expire_locks(container)
    assert _login(home, user).status_code == 200
    with container.reader() as conn:
        names = conn.execute(select(login_throttle.c.value).where(login_throttle.c.kind == "name")).all()
    assert names == []
    # counted from zero again: one more failure does not lock (it would, had the count been kept)
    assert _login(home, user, WRONG).status_code == 401
    assert _login(home, user).status_code == 200


def test_a_card_number_as_user_name_is_stored_nowhere_and_long_names_are_bounded(
    client: TestClient,
    admin: Headers,
    container: Container,
    limits: Callable[..., None],
    from_address: Callable[[str], TestClient],
) -> None:
    home = from_address(HOME)
    for name in ("4111111111111111", "4111 1111 1111 1111", "mr-4111-1111-1111-1111"):
        refused = _login(home, name, WRONG)
        assert refused.status_code == 422, refused.text
        assert refused.json()["type"] == "urn:omnicrm:problem:card_number_refused"
    long_name = "x" * 1500  # the contract refuses strings over 2,000 characters
    assert [_login(home, long_name, WRONG).status_code for _ in range(3)] == [401, 401, 429]
    stored = _stored(container)
    assert not any(re.search(r"4111.?1111", value) for value in stored)
    assert "x" * 65 not in "\n".join(stored)
    assert "x" * 64 in "\n".join(stored)


def test_x_forwarded_for_is_honoured_only_from_a_trusted_proxy(
    client: TestClient,
    admin: Headers,
    container: Container,
    limits: Callable[..., None],
    from_address: Callable[[str], TestClient],
) -> None:
    limits(login_max_failures_per_address=2, trusted_proxies=[ip_network("10.0.0.0/8")])
    proxy, stranger = from_address("10.1.2.3"), from_address(HOME)
    forwarded = {"X-Forwarded-For": f"{ELSEWHERE}, 10.9.9.9"}
    assert [_login(proxy, f"guess-{i}", WRONG, **forwarded).status_code for i in range(2)] == [401, 401]
    _retry_after(_login(proxy, "guess-2", WRONG, **forwarded))  # the client behind the proxy is locked
    assert _login(proxy, "guess-3", WRONG, **{"X-Forwarded-For": "192.0.2.1"}).status_code == 401
    assert _login(stranger, "guess-4", WRONG, **forwarded).status_code == 401  # not a proxy: ignored
    with container.reader() as conn:
        query = select(login_throttle.c.value).where(login_throttle.c.kind == "address")
        addresses = set(conn.execute(query).scalars())
    assert addresses == {ELSEWHERE, "192.0.2.1", HOME}


def test_forgotten_throttle_records_are_pruned(
    client: TestClient,
    admin: Headers,
    container: Container,
    limits: Callable[..., None],
    from_address: Callable[[str], TestClient],
) -> None:
    home = from_address(HOME)
    assert _login(home, "old-guess", WRONG).status_code == 401
    with container.engine.begin() as conn:
        conn.execute(update(login_throttle).values(forget_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert _login(from_address(ELSEWHERE), "new-guess", WRONG).status_code == 401
    with container.reader() as conn:
        rows = {(r.kind, r.value, r.failures) for r in conn.execute(select(login_throttle))}
    assert rows == {("name", "new-guess", 1), ("address", ELSEWHERE, 1)}
