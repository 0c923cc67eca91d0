"""The audit log detects what was done to it: a keyed chain, a MACed head with the count, a verified
checkpoint for the common path, a full walk on demand, and an anchor a bank keeps outside the database."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import create_engine, delete, select, text, update
from sqlalchemy.engine import Connection, make_url
from typer.testing import Result

from omnicrm.bootstrap import Container, bootstrap
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings
from omnicrm.store import audit
from omnicrm.store import migrate as migrations
from omnicrm.store.db import make_engine
from omnicrm.store.tables import audit_head, audit_log

Headers = dict[str, str]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GENESIS = "0" * 64


# ------------------------------------------------------------------------------------ helpers


def _users(client: TestClient, admin: Headers, n: int) -> None:
    """n audited actions through the API, as a bank's admin would make them."""
    for _ in range(n):
        body = {"username": f"u-{uuid.uuid4().hex[:8]}", "role": "operator"}
        assert client.post("/v1/users", json=body, headers=admin).status_code == 201


def _bulk(container: Container, n: int) -> None:
    """n entries appended by the store itself, in one transaction (fast set-up for big chains)."""
    at = datetime(2026, 11, 1, tzinfo=UTC)
    with container.uow() as uow:
        for i in range(n):
            audit.append(
                uow.conn,
                at=at + timedelta(seconds=i),
                actor="bulk",
                action="test.bulk",
                target=f"t-{i}",
                details={"i": i},
            )
        uow.commit()


def _ids(container: Container) -> list[int]:
    with container.reader() as conn:
        return list(conn.execute(select(audit_log.c.id).order_by(audit_log.c.id)).scalars())


def _tamper(container: Container, change: Callable[[Connection], None]) -> None:
    with container.uow() as uow:
        change(uow.conn)
        uow.commit()


def _trail(client: TestClient, headers: Headers) -> dict[str, Any]:
    response = client.get("/v1/audit", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _verify(client: TestClient, headers: Headers, *, full: bool) -> dict[str, Any]:
    response = client.get("/v1/audit/verify", params={"full": str(full).lower()}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _sha_chain(conn: Connection, from_id: int, sign: Callable[[bytes], str]) -> None:
    """What an attacker without the key does after an edit: recompute every hash from there on
    (and the head's last hash) with the algorithm they can run."""
    prev = (
        conn.execute(
            select(audit_log.c.hash).where(audit_log.c.id < from_id).order_by(audit_log.c.id.desc()).limit(1)
        ).scalar_one_or_none()
        or GENESIS
    )
    for row in conn.execute(
        select(audit_log).where(audit_log.c.id >= from_id).order_by(audit_log.c.id)
    ).all():
        body = orjson.dumps(
            [prev, row.at.isoformat(), row.actor, row.action, row.target, row.details],
            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
        )
        digest = sign(body)
        conn.execute(update(audit_log).where(audit_log.c.id == row.id).values(prev_hash=prev, hash=digest))
        prev = digest
    conn.execute(update(audit_head).values(last_hash=prev))


# ------------------------------------------------------------------------------------ intact chains


def test_an_untouched_chain_of_thousands_verifies_fully_and_then_incrementally(
    client: TestClient, container: Container, admin: Headers
) -> None:
    _bulk(container, 3000)
    _users(client, admin, 2)
    total = len(_ids(container))

    full = _verify(client, admin, full=True)
    assert full["intact"] is True, full
    assert full["entries"] == full["entries_checked"] == total
    assert full["first_bad_id"] is None

    again = _trail(client, admin)
    assert again["chain_intact"] is True
    assert again["entries_checked"] == 0  # the full walk left a checkpoint at the head


def test_a_checkpoint_makes_the_common_path_walk_only_what_is_new(
    client: TestClient, container: Container, admin: Headers
) -> None:
    _bulk(container, 500)
    first = _trail(client, admin)
    assert first["chain_intact"] is True
    assert first["entries_checked"] == len(_ids(container))  # nothing verified before: from the start

    assert _trail(client, admin)["entries_checked"] == 0
    _users(client, admin, 3)
    third = _trail(client, admin)
    assert third["chain_intact"] is True
    assert third["entries_checked"] == 3
    assert _verify(client, admin, full=False)["entries_checked"] == 0
    assert _verify(client, admin, full=True)["entries_checked"] == len(_ids(container))


def test_the_head_is_exported_for_anchoring_outside_the_database(
    client: TestClient, container: Container, admin: Headers, headers_for: Callable[[str], Headers]
) -> None:
    auditor = headers_for("auditor")  # itself audited: before the ids are read
    _users(client, admin, 2)
    ids = _ids(container)
    response = client.get("/v1/audit/head", headers=auditor)
    assert response.status_code == 200, response.text
    head = response.json()
    with container.reader() as conn:
        last_hash = conn.execute(select(audit_log.c.hash).where(audit_log.c.id == ids[-1])).scalar_one()
    assert head["last_id"] == ids[-1]
    assert head["count"] == len(ids)
    assert head["hash"] == last_hash
    assert datetime.fromisoformat(head["at"]) <= datetime.now(UTC)

    assert client.get("/v1/audit/head", headers=headers_for("operator")).status_code == 403
    assert client.get("/v1/audit/head").status_code == 401
    assert client.get("/v1/audit/verify", headers=headers_for("marketer")).status_code == 403
    bad = client.get("/v1/audit/verify", params={"full": "perhaps"}, headers=admin)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


# ------------------------------------------------------------------------------------ tampering


@pytest.mark.parametrize("checkpoint", [False, True], ids=["fresh", "after-checkpoint"])
def test_deleting_the_newest_entries_is_detected(
    client: TestClient, container: Container, admin: Headers, checkpoint: bool
) -> None:
    _users(client, admin, 5)
    if checkpoint:
        assert _trail(client, admin)["chain_intact"] is True
    ids = _ids(container)
    _tamper(container, lambda conn: conn.execute(delete(audit_log).where(audit_log.c.id >= ids[-2])))

    trail = _trail(client, admin)
    assert trail["chain_intact"] is False
    assert trail["first_bad_id"] == ids[-2]
    full = _verify(client, admin, full=True)
    assert full["intact"] is False
    assert full["first_bad_id"] == ids[-2]


@pytest.mark.parametrize("checkpoint", [False, True], ids=["fresh", "after-checkpoint"])
def test_deleting_every_entry_is_detected(
    client: TestClient, container: Container, admin: Headers, checkpoint: bool
) -> None:
    _users(client, admin, 3)
    if checkpoint:
        assert _trail(client, admin)["chain_intact"] is True
    _tamper(container, lambda conn: conn.execute(delete(audit_log)))

    assert _trail(client, admin)["chain_intact"] is False
    assert _verify(client, admin, full=False)["intact"] is False
    assert _verify(client, admin, full=True)["intact"] is False


def test_deleting_an_old_entry_is_detected_on_the_common_path(
    client: TestClient, container: Container, admin: Headers
) -> None:
    _bulk(container, 300)
    assert _trail(client, admin)["chain_intact"] is True
    ids = _ids(container)
    _tamper(container, lambda conn: conn.execute(delete(audit_log).where(audit_log.c.id == ids[10])))

    assert _verify(client, admin, full=False)["intact"] is False  # the count no longer matches
    full = _verify(client, admin, full=True)
    assert full["intact"] is False
    assert full["first_bad_id"] == ids[11]


@pytest.mark.parametrize("checkpoint", [False, True], ids=["fresh", "after-checkpoint"])
def test_editing_an_entry_is_detected_and_located(
    client: TestClient, container: Container, admin: Headers, checkpoint: bool
) -> None:
    _users(client, admin, 4)
    if checkpoint:
        assert _trail(client, admin)["chain_intact"] is True
    ids = _ids(container)
    victim = ids[2]
    _tamper(
        container,
        lambda conn: conn.execute(update(audit_log).where(audit_log.c.id == victim).values(actor="mallory")),
    )

    trail = _trail(client, admin)  # the entries it shows are checked too
    assert trail["chain_intact"] is False
    assert trail["first_bad_id"] == victim
    full = _verify(client, admin, full=True)
    assert full["intact"] is False
    assert full["first_bad_id"] == victim


def _plain_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _wrong_key(body: bytes) -> str:
    return hmac.new(b"a key the attacker made up, 32+ bytes long", body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("sign", [_plain_sha256, _wrong_key], ids=["sha256", "hmac-wrong-key"])
def test_editing_an_entry_and_recomputing_the_hashes_without_the_key_is_detected(
    client: TestClient, container: Container, admin: Headers, sign: Callable[[bytes], str]
) -> None:
    _bulk(container, 50)
    ids = _ids(container)
    victim = ids[20]

    def rewrite(conn: Connection) -> None:
        conn.execute(update(audit_log).where(audit_log.c.id == victim).values(details={"i": -1}))
        _sha_chain(conn, victim, sign)

    _tamper(container, rewrite)

    full = _verify(client, admin, full=True)
    assert full["intact"] is False
    assert full["first_bad_id"] == victim
    assert _trail(client, admin)["chain_intact"] is False


def test_recomputing_with_a_wrong_key_in_the_current_format_is_detected(
    client: TestClient, container: Container, admin: Headers
) -> None:
    _bulk(container, 20)
    ids = _ids(container)
    forged = b"0123456789abcdef0123456789abcdef-forged"

    def rewrite(conn: Connection) -> None:
        prev = conn.execute(select(audit_log.c.hash).where(audit_log.c.id == ids[4])).scalar_one()
        for row in conn.execute(
            select(audit_log).where(audit_log.c.id >= ids[5]).order_by(audit_log.c.id)
        ).all():
            actor = "mallory" if row.id == ids[5] else row.actor
            digest = audit.entry_digest(
                forged, prev, row.id, row.at, actor, row.action, row.target, row.details
            )
            conn.execute(
                update(audit_log)
                .where(audit_log.c.id == row.id)
                .values(actor=actor, prev_hash=prev, hash=digest)
            )
            prev = digest
        conn.execute(update(audit_head).values(last_hash=prev))

    _tamper(container, rewrite)

    full = _verify(client, admin, full=True)
    assert full["intact"] is False
    assert full["first_bad_id"] == ids[5]


def test_editing_the_head_alone_is_detected_even_after_later_appends(
    client: TestClient, container: Container, admin: Headers
) -> None:
    _users(client, admin, 4)
    assert _trail(client, admin)["chain_intact"] is True
    ids = _ids(container)

    def rewind(conn: Connection) -> None:  # pretend the log ended two entries earlier
        row = conn.execute(select(audit_log).where(audit_log.c.id == ids[-3])).one()
        conn.execute(delete(audit_log).where(audit_log.c.id > ids[-3]))
        conn.execute(update(audit_head).values(last_hash=row.hash, last_id=row.id, entry_count=len(ids) - 2))

    _tamper(container, rewind)
    assert _trail(client, admin)["chain_intact"] is False
    assert _verify(client, admin, full=True)["intact"] is False

    _users(client, admin, 2)  # the service keeps running and appending
    assert _trail(client, admin)["chain_intact"] is False
    later = _verify(client, admin, full=True)
    assert later["intact"] is False
    assert later["first_bad_id"] is not None


# ------------------------------------------------------------------------------------ PostgreSQL concurrency


def test_concurrent_appends_form_one_chain(client: TestClient, container: Container, admin: Headers) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            _users(client, admin, 10)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    full = _verify(client, admin, full=True)
    assert full["intact"] is True, full
    assert full["entries"] == len(_ids(container)) >= 40


# ------------------------------------------------------------------------------------ the key


# Production also needs its own pseudonym key (data subjects' rights) and feedback key (tracked links);
# given here so that only the audit key is missing.
PSEUDONYM = {"pseudonym_key": "p" * 40, "feedback_key": "f" * 40}


def test_production_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ValidationError, match="OMNICRM_AUDIT_KEY"):
        Settings(env="production", database_url="postgresql+psycopg://bank@db/omnicrm", **PSEUDONYM)
    with pytest.raises(ValidationError, match="OMNICRM_AUDIT_KEY"):
        Settings(
            env="production",
            database_url="postgresql+psycopg://bank@db/omnicrm",
            audit_key="short",
            **PSEUDONYM,
        )
    ok = Settings(
        env="production", database_url="postgresql+psycopg://bank@db/omnicrm", audit_key="k" * 32, **PSEUDONYM
    )
    assert ok.audit_key is not None


def _cli_settings(url: str, **extra: Any) -> Settings:
    return Settings(
        database_url=url,
        catalogue_file=SHIPPED_CATALOGUE,
        scenarios_dir=SHIPPED_SCENARIOS,
        env="test",
        **extra,
    )


def test_without_a_key_a_development_database_keeps_one_in_a_private_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    first = bootstrap(_cli_settings(url), migrate=True)
    first.close()
    key_file = tmp_path / "dev.db.audit-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    again = bootstrap(_cli_settings(url), migrate=True)  # a restart keeps the same key
    again.close()
    assert key_file.read_bytes() == key
    other = bootstrap(_cli_settings(url, audit_key="another key of at least 32 characters"), migrate=False)
    with other.uow() as uow:  # the same log read with another key: the head no longer verifies
        verdict = audit.verify(uow.conn, full=True)
    other.close()
    assert verdict.intact is False


# ------------------------------------------------------------------------ entries from before the key


def _legacy_append(conn: Connection, i: int) -> None:
    prev = conn.execute(select(audit_head.c.last_hash)).scalar_one()
    at = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(minutes=i)
    body = orjson.dumps(
        [prev, at.isoformat(), "old", "legacy.action", f"t-{i}", {"i": i}],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    digest = hashlib.sha256(body).hexdigest()
    conn.execute(
        audit_log.insert().values(
            at=at,
            actor="old",
            action="legacy.action",
            target=f"t-{i}",
            details={"i": i},
            prev_hash=prev,
            hash=digest,
        )
    )
    conn.execute(text("UPDATE audit_head SET last_hash = :h"), {"h": digest})


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (the migration under test runs on it from scratch)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legacy.db'}"
        return
    name = f"omnicrm_legacy_{uuid.uuid4().hex[:10]}"
    admin_engine = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def test_entries_written_before_the_key_keep_verifying_and_stay_protected(blank_url: str) -> None:
    engine = make_engine(blank_url)
    migrations.upgrade(engine, "0005")
    with engine.begin() as conn:
        for i in range(30):
            _legacy_append(conn, i)
    engine.dispose()

    container = bootstrap(_cli_settings(blank_url), migrate=True)
    try:
        with TestClient(_app(container)) as client:
            admin = _admin(container)
            _users(client, admin, 3)
            full = _verify(client, admin, full=True)
            assert full["intact"] is True, full
            # 30 legacy, the scenarios published at the start, the admin and its token, 3 users
            assert full["entries"] == 30 + 1 + 2 + 3

            def rewrite_legacy(conn: Connection) -> None:  # a legacy row, rehashed the old way
                conn.execute(update(audit_log).where(audit_log.c.target == "t-7").values(actor="mallory"))
                victim = conn.execute(select(audit_log.c.id).where(audit_log.c.target == "t-7")).scalar_one()
                _sha_chain(conn, victim, _plain_sha256)

            _tamper(container, rewrite_legacy)
            broken = _verify(client, admin, full=True)
            assert broken["intact"] is False
    finally:
        container.close()


def _app(container: Container) -> Any:
    from omnicrm.api.app import create_app

    return create_app(container)


def _admin(container: Container) -> Headers:
    from omnicrm.services.access import auth

    with container.uow() as uow:
        now = datetime.now(UTC)
        auth.create_user(
            uow.conn, username="root", role="admin", password=None, branch=None, actor="t", now=now
        )
        token = auth.issue_token(uow.conn, username="root", name="t", ttl=None, actor="t", now=now)
        uow.commit()
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------------------------ CLI


def test_cli_prints_the_head_and_verifies_with_an_anchor(
    run: Callable[..., Result], cli_container: Callable[[], Container]
) -> None:
    for name in ("a", "b", "c"):
        assert run("users", "add", name, "--role", "auditor").exit_code == 0
    head = run("audit", "head")
    assert head.exit_code == 0, head.output
    anchor = json.loads(head.output)
    assert anchor["count"] == 4  # the scenarios published at the first start, then 3 users
    assert set(anchor) == {"last_id", "count", "hash", "at"}

    assert run("users", "add", "d", "--role", "auditor").exit_code == 0
    ok = run("audit", "verify", "--anchor", head.output.strip())
    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output
    assert run("audit", "verify", "--full", "--anchor", anchor["hash"]).exit_code == 0

    container = cli_container()
    _tamper(
        container, lambda conn: conn.execute(delete(audit_log).where(audit_log.c.id >= anchor["last_id"]))
    )
    broken = run("audit", "verify")
    assert broken.exit_code == 1
    assert f"first bad entry: {anchor['last_id']}" in broken.output
    lost = run("audit", "verify", "--full", "--anchor", head.output.strip())
    assert lost.exit_code == 1
    assert "anchor" in lost.output


def test_cli_refuses_an_anchor_that_is_not_a_prefix_of_the_chain(
    run: Callable[..., Result], cli_container: Callable[[], Container]
) -> None:
    assert run("users", "add", "a", "--role", "auditor").exit_code == 0
    assert run("users", "add", "b", "--role", "auditor").exit_code == 0
    anchor = json.loads(run("audit", "head").output)
    foreign = dict(anchor, hash="f" * 64)
    result = run("audit", "verify", "--anchor", json.dumps(foreign))
    assert result.exit_code == 1
    assert "anchor" in result.output
    wrong_count = dict(anchor, count=anchor["count"] + 5)
    assert run("audit", "verify", "--anchor", json.dumps(wrong_count)).exit_code == 1
    assert run("audit", "verify", "--anchor", "not-a-hash").exit_code == 2
