"""Data subjects' rights (GDPR Art. 15, 17, 20): export a person's data, and erase it under four eyes.

Driven over HTTP as a bank's systems would, on SQLite and PostgreSQL. Erasure is checked where it
matters: no personal value of the person left in any table, nor (on SQLite) in the database file or
its write-ahead log; the events stay countable; nothing stale brings the person back."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, or_, select, text
from sqlalchemy.engine import Connection
from typer.testing import CliRunner

from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container
from omnicrm.cli import app as cli_app
from omnicrm.services.access import auth
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS
from omnicrm.store.tables import metadata

CATALOGUE = SHIPPED_CATALOGUE
SCENARIOS = SHIPPED_SCENARIOS
Headers = dict[str, str]
Json = dict[str, Any]
PROBLEM = "application/problem+json"
LOAN = "loan-application-reminder"


def _person_values() -> dict[str, str]:
    """Values nobody else in the database holds, so finding one anywhere means it was not erased."""
    tag = uuid.uuid4().hex[:8]
    digits = str(int(tag, 16) % 10_000_000).zfill(7)
    return {
        "first_name": f"Zoryana{tag}",
        "last_name": f"Kvitka{tag}",
        "phone": f"+38067{digits}",
        "email": f"zoryana.{tag}@example.com",
        "cbs_id": f"CBS{tag}X",
        "contract": f"LN{tag}Q",
    }


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _create_person(client: TestClient, admin: Headers, values: dict[str, str]) -> str:
    """A consenting client with a profile, identifiers, a product, a consent and a relationship."""
    spouse = f"rel-{uuid.uuid4().hex[:10]}"
    other = client.post(
        "/v1/customers",
        json={"identifiers": [{"kind": "crm_id", "value": spouse}]},
        headers=admin,
    )
    assert other.status_code == 201, other.text
    body = {
        "status": "client",
        "first_name": values["first_name"],
        "last_name": values["last_name"],
        "date_of_birth": "1987-03-14",
        "timezone": "Europe/Kyiv",
        "identifiers": [
            {"kind": "phone", "value": values["phone"]},
            {"kind": "email", "value": values["email"]},
            {"kind": "cbs_id", "value": values["cbs_id"]},
        ],
        "segments": ["premium"],
        "consents": [
            {"channel": c, "purpose": "marketing", "granted": True, "effective_at": "2026-01-01T00:00:00Z"}
            for c in ("webpush", "email", "callcentre")
        ],
        "products": [
            {"product_class": "consumer_loan", "contract_number": values["contract"], "state": "active"}
        ],
        "relationships": [
            {
                "kind": "spouse",
                "related": {"kind": "crm_id", "value": spouse},
                "note": f"married to {values['first_name']}",
            }
        ],
    }
    created = client.post("/v1/customers", json=body, headers=admin)
    assert created.status_code == 201, created.text
    cid: str = created.json()["id"]
    patched = client.patch(f"/v1/customers/{cid}", json={"middle_name": "Petrivna"}, headers=admin)
    assert patched.status_code == 200, patched.text
    return cid


def _abandon_loan(client: TestClient, admin: Headers, values: dict[str, str]) -> Json:
    """An abandoned loan application naming the person (its payload holds a personal value)."""
    event = {
        "event_id": f"ev-{uuid.uuid4().hex[:10]}",
        "type": "application.abandoned",
        "occurred_at": _iso(datetime.now(UTC) - timedelta(minutes=5)),
        "source": "web",
        "identifiers": {"phone": values["phone"]},
        "attributes": {
            "product_class": "consumer_loan",
            "application_id": f"A-{values['last_name']}",
            "last_step": "documents",
        },
    }
    posted = client.post("/v1/events", json=event, headers=admin)
    assert posted.status_code == 201, posted.text
    return event


def _wait_for_conversation(client: TestClient, admin: Headers, cid: str) -> Json:
    """The loan conversation the app's decision worker starts (within 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        response = client.get(f"/v1/customers/{cid}/conversations", headers=admin)
        assert response.status_code == 200, response.text
        loan = [i for i in response.json()["instances"] if i["scenario_id"] == LOAN]
        if loan:
            instance: Json = loan[0]
            return instance
        assert time.monotonic() < deadline, "the decision worker did not start a conversation within 5 s"
        time.sleep(0.05)


def _erase(client: TestClient, cid: str, requester: Headers, approver: Headers) -> Json:
    asked = client.post(f"/v1/customers/{cid}:erase", headers=requester)
    assert asked.status_code == 202, asked.text
    approved = client.post(f"/v1/erasure-requests/{asked.json()['id']}:approve", headers=approver)
    assert approved.status_code == 200, approved.text
    result: Json = approved.json()
    return result


def _rows_as_text(container: Container) -> str:
    """Every row of every table, as text (what a SELECT can still see)."""
    with container.reader() as conn:
        return _rows_as_text_on(conn)


def _rows_as_text_on(conn: Connection) -> str:
    chunks: list[str] = []
    for table in metadata.sorted_tables:
        if conn.dialect.name == "postgresql":
            query = text(f'SELECT t::text FROM "{table.name}" t')  # noqa: S608 - names from our schema
            chunks.extend(conn.execute(query).scalars())
        else:
            chunks.extend(repr(tuple(row)) for row in conn.execute(select(table)))
    return "\n".join(chunks)


def _database_bytes(container: Container) -> bytes:
    """The SQLite database file and its write-ahead log, as they are on disk - read by another
    process: closing a descriptor of the database file in this one would drop every POSIX lock
    SQLite holds on it here (fcntl locks belong to the process), and the shared test database was
    later corrupted by two writers at once (the fork test in test_catchup.py)."""
    path = Path(str(container.engine.url.database))
    files = [str(path)] + ([f"{path}-wal"] if Path(f"{path}-wal").exists() else [])
    return subprocess.run(["cat", *files], capture_output=True, check=True).stdout


def _customer_columns(table: Table) -> list[Any]:
    return [c for c in table.columns if any(fk.column.table.name == "customers" for fk in c.foreign_keys)] + (
        [table.c.id] if table.name == "customers" else []
    )


def _assert_problem(response: Any, status: int) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: Json = response.json()
    assert body["status"] == status
    return body


@pytest.fixture
def compliance(headers_for: Callable[[str], Headers]) -> Headers:
    return headers_for("compliance")


def test_export_holds_every_table_naming_the_customer(
    client: TestClient, container: Container, admin: Headers, compliance: Headers
) -> None:
    values = _person_values()
    cid = _create_person(client, admin, values)
    twin = client.post(
        "/v1/customers",
        json={
            "first_name": "Twin",
            "identifiers": [{"kind": "device_id", "value": f"dev-{values['cbs_id']}"}],
        },
        headers=admin,
    ).json()["id"]
    merged = client.post(f"/v1/customers/{cid}/merge", json={"other_id": twin}, headers=admin)
    assert merged.status_code == 200, merged.text
    _abandon_loan(client, admin, values)
    _wait_for_conversation(client, admin, cid)

    response = client.get(f"/v1/customers/{cid}:export", headers=compliance)

    assert response.status_code == 200, response.text
    export = response.json()
    assert export["customer_id"] == cid
    ids = {cid, twin}
    tables = export["tables"]
    with container.reader() as conn:
        for table in metadata.sorted_tables:
            columns = _customer_columns(table)
            if not columns:
                continue
            held = conn.execute(select(table).where(or_(*(c.in_(sorted(ids)) for c in columns)))).all()
            assert table.name in tables, f"the export leaves out {table.name}"
            assert len(tables[table.name]) == len(held), table.name
    assert {r["id"] for r in tables["customers"]} >= ids
    person = next(r for r in tables["customers"] if r["id"] == cid)
    assert (person["first_name"], person["last_name"]) == (values["first_name"], values["last_name"])
    assert {(i["kind"], i["value"]) for i in tables["identifiers"]} >= {
        ("phone", values["phone"]),
        ("email", values["email"]),
        ("cbs_id", values["cbs_id"]),
    }
    assert any(e["type"] == "application.abandoned" for e in tables["events"])
    assert tables["merges"]
    assert tables["decisions"]
    assert tables["scenario_instances"]
    assert len(tables["consents"]) == 3
    assert tables["products"][0]["contract_number"] == values["contract"]
    audit = client.get("/v1/audit", params={"action": "customer.exported", "target": cid}, headers=admin)
    assert len(audit.json()["items"]) == 1


def test_only_compliance_and_admin_export_and_erase(
    client: TestClient, admin: Headers, compliance: Headers, headers_for: Callable[[str], Headers]
) -> None:
    cid = _create_person(client, admin, _person_values())
    asked = client.post(f"/v1/customers/{cid}:erase", headers=compliance)
    assert asked.status_code == 202, asked.text
    for role in ("operator", "marketer", "auditor", "integration"):
        headers = headers_for(role)
        _assert_problem(client.get(f"/v1/customers/{cid}:export", headers=headers), 403)
        _assert_problem(client.post(f"/v1/customers/{cid}:erase", headers=headers), 403)
        _assert_problem(
            client.post(f"/v1/erasure-requests/{asked.json()['id']}:approve", headers=headers), 403
        )
    _assert_problem(client.get(f"/v1/customers/{cid}:export"), 401)
    assert client.get(f"/v1/customers/{cid}:export", headers=admin).status_code == 200
    assert client.get(f"/v1/customers/{cid}", headers=admin).json()["first_name"] is not None


def test_erasure_takes_two_people(
    client: TestClient, admin: Headers, compliance: Headers, headers_for: Callable[[str], Headers]
) -> None:
    values = _person_values()
    cid = _create_person(client, admin, values)
    asked = client.post(f"/v1/customers/{cid}:erase", headers=compliance)
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["id"]
    assert asked.json()["status"] == "requested"
    _assert_problem(client.post(f"/v1/customers/{cid}:erase", headers=headers_for("compliance")), 409)

    own = client.post(f"/v1/erasure-requests/{request_id}:approve", headers=compliance)

    _assert_problem(own, 403)
    assert client.get(f"/v1/customers/{cid}", headers=admin).json()["first_name"] == values["first_name"]
    approved = client.post(f"/v1/erasure-requests/{request_id}:approve", headers=headers_for("compliance"))
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "executed"
    _assert_problem(client.post(f"/v1/erasure-requests/{request_id}:approve", headers=admin), 409)
    _assert_problem(client.post("/v1/erasure-requests/no-such-request:approve", headers=admin), 404)
    _assert_problem(client.post("/v1/customers/no-such-customer:erase", headers=compliance), 404)
    _assert_problem(client.post(f"/v1/customers/{cid}:erase", headers=compliance), 409)
    audit = client.get("/v1/audit", params={"target": cid}, headers=admin).json()
    assert audit["chain_intact"] is True
    actions = [e["action"] for e in audit["items"]]
    assert actions.count("customer.erasure_requested") == 1
    assert actions.count("customer.erased") == 1


def test_erasure_leaves_no_personal_value_in_the_database(
    client: TestClient, container: Container, admin: Headers, compliance: Headers
) -> None:
    values = _person_values()
    cid = _create_person(client, admin, values)
    _abandon_loan(client, admin, values)
    _wait_for_conversation(client, admin, cid)
    before = client.get(f"/v1/customers/{cid}/timeline", headers=admin).json()["items"]

    result = _erase(client, cid, compliance, admin)

    assert result["status"] == "executed"
    profile = client.get(f"/v1/customers/{cid}", headers=admin).json()
    assert profile["status"] == "erased"
    assert profile["first_name"] is None
    assert profile["last_name"] is None
    assert profile["date_of_birth"] is None
    assert profile["identifiers"] == []
    after = client.get(f"/v1/customers/{cid}/timeline", headers=admin).json()["items"]
    assert [(e["type"], e["occurred_at"]) for e in after] == [(e["type"], e["occurred_at"]) for e in before]
    lookup = client.get(
        "/v1/customers/lookup", params={"kind": "phone", "value": values["phone"]}, headers=admin
    )
    _assert_problem(lookup, 404)
    rows = _rows_as_text(container)
    for name, value in values.items():
        assert value not in rows, f"{name} is still in a table"
    if container.engine.dialect.name == "sqlite":
        raw = _database_bytes(container)
        for name, value in values.items():
            assert value.encode() not in raw, f"{name} is still in the SQLite file or its log"
    assert client.get("/v1/audit", headers=admin).json()["chain_intact"] is True


def test_scheduled_contact_is_withdrawn(client: TestClient, admin: Headers, compliance: Headers) -> None:
    values = _person_values()
    cid = _create_person(client, admin, values)
    _abandon_loan(client, admin, values)
    instance = _wait_for_conversation(client, admin, cid)
    assert instance["status"] == "active"

    _erase(client, cid, compliance, admin)

    body = client.get(f"/v1/customers/{cid}/conversations", headers=admin).json()
    ended = next(i for i in body["instances"] if i["id"] == instance["id"])
    assert (ended["status"], ended["outcome"], ended["due_at"]) == ("cancelled", "cancelled_by_erasure", None)
    assert all(o["status"] != "queued" for o in body["outbox"])
    assert all(
        o["status_reason"] == "cancelled_by_erasure" for o in body["outbox"] if o["status"] == "withdrawn"
    )


def test_stale_replay_does_not_bring_the_person_back(
    client: TestClient,
    container: Container,
    admin: Headers,
    compliance: Headers,
    count: Callable[[Table], int],
) -> None:
    values = _person_values()
    cid = _create_person(client, admin, values)
    old = _abandon_loan(client, admin, values)
    _erase(client, cid, compliance, admin)
    customers_before = count(metadata.tables["customers"])

    replayed = client.post("/v1/events", json=old, headers=admin)
    fresh = {**old, "event_id": f"ev-{uuid.uuid4().hex[:10]}"}
    by_phone = client.post("/v1/events", json=fresh, headers=admin)
    by_id = client.post(
        "/v1/events:batch",
        json={"items": [{**fresh, "identifiers": {}, "customer_id": cid}]},
        headers=admin,
    )
    upsert = client.post(
        "/v1/customers",
        json={
            "first_name": values["first_name"],
            "identifiers": [{"kind": "email", "value": values["email"].upper()}],
        },
        headers=admin,
    )
    patch = client.patch(f"/v1/customers/{cid}", json={"first_name": values["first_name"]}, headers=admin)
    attach = client.post(
        "/v1/customers", json={"identifiers": [{"kind": "cbs_id", "value": values["cbs_id"]}]}, headers=admin
    )

    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "duplicate"
    refused = _assert_problem(by_phone, 422)
    assert refused["type"] == "urn:omnicrm:problem:erased_subject"
    assert refused["errors"][0]["field"] == "identifiers.phone"
    assert values["phone"] not in by_phone.text
    assert _assert_problem(by_id, 422)["type"] == "urn:omnicrm:problem:erased_subject"
    assert _assert_problem(upsert, 422)["type"] == "urn:omnicrm:problem:erased_subject"
    assert _assert_problem(attach, 422)["type"] == "urn:omnicrm:problem:erased_subject"
    _assert_problem(patch, 409)
    assert count(metadata.tables["customers"]) == customers_before
    rows = _rows_as_text(container)
    for name, value in values.items():
        assert value not in rows, f"{name} came back"


def test_erasure_covers_merged_profiles_and_refuses_their_unmerge(
    client: TestClient, container: Container, admin: Headers, compliance: Headers
) -> None:
    values = _person_values()
    cid = _create_person(client, admin, values)
    twin_body = {
        "last_name": values["last_name"],
        "identifiers": [{"kind": "email", "value": f"twin.{values['email']}"}],
    }
    twin = client.post("/v1/customers", json=twin_body, headers=admin).json()["id"]
    merged = client.post(f"/v1/customers/{cid}/merge", json={"other_id": twin}, headers=admin)
    assert merged.status_code == 200, merged.text

    _erase(client, twin, compliance, admin)

    assert client.get(f"/v1/customers/{cid}", headers=admin).json()["status"] == "erased"
    _assert_problem(client.post(f"/v1/customers/{twin}/unmerge", headers=admin), 409)
    rows = _rows_as_text(container)
    for name, value in values.items():
        assert value not in rows, f"{name} is still in a table"
    again = client.post("/v1/customers", json=twin_body, headers=admin)
    assert _assert_problem(again, 422)["type"] == "urn:omnicrm:problem:erased_subject"


def test_import_of_an_erased_person_is_refused(
    run: Callable[..., Any], cli_container: Callable[[], Container], tmp_path: Path
) -> None:
    """`omnicrm import customers` (bulk path) and `import events` refuse a line naming an erased person."""
    assert run("migrate").exit_code == 0
    container = cli_container()
    with container.uow() as uow:
        at = datetime.now(UTC)
        tokens = {}
        for name, role in (("dpo-1", "compliance"), ("dpo-2", "compliance"), ("root", "admin")):
            auth.create_user(
                uow.conn, username=name, role=role, password=None, branch=None, actor="test", now=at
            )
            tokens[name] = auth.issue_token(uow.conn, username=name, name="t", ttl=None, actor="test", now=at)
        uow.commit()
    headers = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    values = _person_values()
    with TestClient(create_app(container)) as client:
        cid = _create_person(client, headers["root"], values)
        _erase(client, cid, headers["dpo-1"], headers["dpo-2"])
    profiles = tmp_path / "profiles.jsonl"
    line = {"first_name": values["first_name"], "identifiers": [{"kind": "phone", "value": values["phone"]}]}
    profiles.write_bytes(
        orjson.dumps({"identifiers": [{"kind": "cookie_id", "value": "ck-new"}]})
        + b"\n"
        + orjson.dumps(line)
        + b"\n"
    )
    events = tmp_path / "events.jsonl"
    event = {
        "event_id": "imp-1",
        "type": "auth.failed",
        "occurred_at": "2026-10-01T10:00:00Z",
        "source": "web",
        "identifiers": {"email": values["email"]},
        "attributes": {"method": "otp"},
    }
    events.write_bytes(orjson.dumps(event) + b"\n")

    imported = run("import", "customers", str(profiles))
    imported_events = run("import", "events", str(events))

    assert imported.exit_code != 0, imported.output
    assert "erased" in imported.output
    assert values["phone"] not in imported.output
    assert imported_events.exit_code != 0, imported_events.output
    assert "erased" in imported_events.output
    with container.reader() as conn:
        text_rows = _rows_as_text_on(conn)
    assert values["first_name"] not in text_rows
    assert "ck-new" not in text_rows


def test_production_refuses_to_start_without_its_own_pseudonym_key() -> None:
    """The development key is public (it is in the code): production must bring its own."""
    env = {
        "OMNICRM_ENV": "production",
        "OMNICRM_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "OMNICRM_CATALOGUE_FILE": str(CATALOGUE),
        "OMNICRM_SCENARIOS_DIR": str(SCENARIOS),
        "OMNICRM_AUDIT_KEY": "a" * 40,  # production needs its audit and feedback keys too;
        "OMNICRM_FEEDBACK_KEY": "f" * 40,  # only the pseudonym key is missing
    }
    runner = CliRunner()

    refused = runner.invoke(cli_app, ["check-config"], env=env)
    accepted = runner.invoke(
        cli_app, ["check-config"], env={**env, "OMNICRM_PSEUDONYM_KEY": uuid.uuid4().hex + uuid.uuid4().hex}
    )

    assert refused.exit_code != 0
    assert "OMNICRM_PSEUDONYM_KEY" in str(refused.exception) + refused.output
    assert accepted.exit_code == 0, accepted.output
