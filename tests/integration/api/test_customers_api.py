"""The client file over HTTP: upsert, lookup, validation, patch, consent, mass update and roles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, select

from omnicrm.bootstrap import Container
from omnicrm.domain.permissions import ROLE_PERMISSIONS, Permission
from omnicrm.domain.vocabulary import CHANNELS, ROLES
from omnicrm.store.tables import audit_log, consents, customers, identifiers, products, segments

Headers = dict[str, str]
Json = dict[str, Any]
PHONE = "+380671234567"
IBAN = "UA213223130000026007233566001"


def _stored(container: Container, customer_id: str) -> Json:
    with container.reader() as conn:
        row = conn.execute(select(customers).where(customers.c.id == customer_id)).one()
    return dict(row._mapping)


def _segments(container: Container, customer_id: str) -> set[str]:
    with container.reader() as conn:
        query = select(segments.c.segment).where(segments.c.customer_id == customer_id)
        return set(conn.execute(query).scalars())


# ------------------------------------------------------------------------------------ create / upsert


def test_create_then_upsert_by_the_same_identifiers_updates_the_one_profile(
    client: TestClient, admin: Headers, container: Container, count: Callable[[Table], int]
) -> None:
    first = client.post(
        "/v1/customers",
        json={
            "identifiers": [
                {"kind": "phone", "value": "067 123 45 67"},
                {"kind": "email", "value": "Olena.Koval@Example.COM"},
            ],
            "first_name": "Olena",
            "last_name": "Koval",
            "branch": "kyiv-01",
        },
        headers=admin,
    )
    assert first.status_code == 201, first.text
    created = first.json()
    assert sorted((i["kind"], i["value"]) for i in created["identifiers"]) == [
        ("email", "olena.koval@example.com"),
        ("phone", PHONE),
    ]
    with container.reader() as conn:
        stored_ids = {
            (r.kind, r.value) for r in conn.execute(select(identifiers.c.kind, identifiers.c.value))
        }
    assert stored_ids == {("phone", PHONE), ("email", "olena.koval@example.com")}

    # The same person again, by the phone written another way: updated, not duplicated.
    second = client.post(
        "/v1/customers",
        json={
            "identifiers": [{"kind": "phone", "value": "+38 (067) 123-45-67"}],
            "last_name": "Kovalenko",
            "value_tier": "affluent",
        },
        headers=admin,
    )
    assert second.status_code == 200, second.text
    updated = second.json()
    assert updated["id"] == created["id"]
    assert updated["last_name"] == "Kovalenko"
    assert updated["first_name"] == "Olena"
    assert count(customers) == 1
    assert count(identifiers) == 2
    row = _stored(container, created["id"])
    assert (row["first_name"], row["last_name"], row["branch"], row["value_tier"]) == (
        "Olena",
        "Kovalenko",
        "kyiv-01",
        "affluent",
    )
    assert row["version"] > created["version"]


# ------------------------------------------------------------------------------------ lookup


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("phone", PHONE),
        ("phone", "0671234567"),
        ("phone", "+38 067 123-45-67"),
        ("email", "TARAS.S@bank.example"),
        ("email", "  taras.s@BANK.example "),
        ("account", IBAN),
        ("account", "ua21 3223 1300 0002 6007 2335 6600 1"),
        ("cbs_id", "CBS-000042"),
        ("contract", "DEP-2026-0001"),
    ],
)
def test_lookup_by_any_identifier_form(client: TestClient, admin: Headers, kind: str, value: str) -> None:
    created = client.post(
        "/v1/customers",
        json={
            "status": "client",
            "identifiers": [
                {"kind": "phone", "value": PHONE},
                {"kind": "email", "value": "taras.s@bank.example"},
                {"kind": "account", "value": IBAN},
                {"kind": "cbs_id", "value": "CBS-000042"},
            ],
            "products": [{"product_class": "deposit", "contract_number": "DEP-2026-0001", "state": "active"}],
        },
        headers=admin,
    ).json()
    client.post(
        "/v1/customers", json={"identifiers": [{"kind": "phone", "value": "+380501112233"}]}, headers=admin
    )

    response = client.get("/v1/customers/lookup", params={"kind": kind, "value": value}, headers=admin)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == created["id"]


def test_lookup_finds_a_contract_opened_by_an_event(
    client: TestClient, admin: Headers, make_event: Callable[..., Json]
) -> None:
    event = make_event(
        "product.opened",
        source="core_banking",
        identifiers={"cbs_id": "CBS-7"},
        attributes={"product_class": "consumer_loan", "contract_number": "LN-77"},
    )
    owner = client.post("/v1/events", json=event, headers=admin).json()["customer_id"]

    response = client.get(
        "/v1/customers/lookup", params={"kind": "contract", "value": "LN-77"}, headers=admin
    )

    assert response.status_code == 200, response.text
    assert response.json()["id"] == owner


@pytest.mark.parametrize(
    ("kind", "value", "status"),
    [
        ("phone", "+380931234567", 404),
        ("email", "nobody@bank.example", 404),
        ("contract", "NO-SUCH-1", 404),
        ("phone", "12", 422),
        ("email", "not-an-email", 422),
        ("account", "UA213223130000026007233566002", 422),  # wrong IBAN check digits
    ],
)
def test_lookup_misses_and_invalid_values(
    client: TestClient, admin: Headers, kind: str, value: str, status: int
) -> None:
    client.post("/v1/customers", json={"identifiers": [{"kind": "phone", "value": PHONE}]}, headers=admin)
    response = client.get("/v1/customers/lookup", params={"kind": kind, "value": value}, headers=admin)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


def test_lookup_of_an_unknown_kind_is_422(client: TestClient, admin: Headers) -> None:
    response = client.get("/v1/customers/lookup", params={"kind": "passport", "value": "AA1"}, headers=admin)
    assert response.status_code == 422


# ------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "identifiers": [
                    {"kind": "email", "value": "a@bank.example"},
                    {"kind": "phone", "value": "12345"},
                ]
            },
            "identifiers[1].value",
        ),
        ({"identifiers": [{"kind": "email", "value": "no-at-sign"}]}, "identifiers[0].value"),
        (
            {"identifiers": [{"kind": "account", "value": "UA213223130000026007233566002"}]},
            "identifiers[0].value",
        ),
        ({"identifiers": [{"kind": "phone", "value": PHONE}], "nickname": "Oli"}, "nickname"),
        (
            {"identifiers": [{"kind": "phone", "value": PHONE}], "preferences": {"colour": "blue"}},
            "preferences.colour",
        ),
        ({"identifiers": [{"kind": "phone", "value": PHONE, "primary": True}]}, "identifiers.0.primary"),
        ({"identifiers": [{"kind": "phone", "value": PHONE}], "timezone": "Europe/Atlantis"}, "timezone"),
        (
            {"identifiers": [{"kind": "phone", "value": PHONE}], "date_of_birth": "1850-01-01"},
            "date_of_birth",
        ),
        ({"identifiers": []}, "identifiers"),
        (
            {
                "identifiers": [{"kind": "phone", "value": PHONE}],
                "products": [{"product_class": "card", "contract_number": "C-1", "state": "maturing"}],
            },
            "products[0].state",
        ),
        (
            {
                "identifiers": [{"kind": "phone", "value": PHONE}],
                "relationships": [{"kind": "spouse", "related": {"kind": "phone", "value": "+380501112233"}}],
            },
            "relationships[0].related",
        ),
    ],
    ids=[
        "invalid-phone",
        "invalid-email",
        "bad-iban",
        "extra-field",
        "extra-nested-field",
        "extra-identifier-field",
        "unknown-timezone",
        "implausible-birth",
        "no-identifier",
        "bad-product-state",
        "unknown-relative",
    ],
)
def test_invalid_profile_is_422_naming_the_field_and_writes_nothing(
    client: TestClient,
    admin: Headers,
    state_counts: Callable[[], dict[str, int]],
    count: Callable[[Table], int],
    body: Json,
    field: str,
) -> None:
    before, audit_before = state_counts(), count(audit_log)

    response = client.post("/v1/customers", json=body, headers=admin)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]], problem
    assert state_counts() == before
    assert count(audit_log) == audit_before


# ------------------------------------------------------------------------------------ read / patch


def test_get_unknown_customer_is_404_problem(client: TestClient, admin: Headers) -> None:
    response = client.get("/v1/customers/01NOSUCHCUSTOMER0000000000", headers=admin)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:omnicrm:problem:not_found"
    assert body["status"] == 404
    assert "01NOSUCHCUSTOMER0000000000" in body["detail"]


def test_patch_updates_fields_and_is_audited(
    client: TestClient,
    admin: Headers,
    container: Container,
    create_customer: Callable[..., Json],
    audit_actions: Callable[[str], int],
) -> None:
    created = create_customer(first_name="Ivan", language="uk", segments=["old"])
    updates_before = audit_actions("customer.updated")

    response = client.patch(
        f"/v1/customers/{created['id']}",
        json={
            "last_name": "Franko",
            "language": "en",
            "constraints": {"do_not_contact": True, "channel_blacklist": ["sms"]},
            "preferences": {"preferred_channel": "email"},
            "segments": ["payroll", "digital"],
        },
        headers=admin,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["last_name"] == "Franko"
    assert body["first_name"] == "Ivan"
    assert body["constraints"]["do_not_contact"] is True
    assert body["constraints"]["channel_blacklist"] == ["sms"]
    assert body["preferences"]["preferred_channel"] == "email"
    row = _stored(container, created["id"])
    assert (row["first_name"], row["last_name"], row["language"]) == ("Ivan", "Franko", "en")
    assert row["do_not_contact"] is True
    assert row["preferred_channel"] == "email"
    assert _segments(container, created["id"]) == {"payroll", "digital"}
    assert audit_actions("customer.updated") == updates_before + 1
    with container.reader() as conn:
        entry = conn.execute(
            select(audit_log)
            .where(audit_log.c.action == "customer.updated", audit_log.c.target == created["id"])
            .order_by(audit_log.c.id.desc())
        ).first()
    assert entry is not None
    assert {"last_name", "language", "do_not_contact", "segments"} <= set(entry.details["fields"])


@pytest.mark.parametrize(
    ("body", "status"),
    [({"nickname": "x"}, 422), ({"value_tier": "platinum"}, 422), ({"segments": ["Not A Label"]}, 422)],
)
def test_invalid_patch_changes_nothing(
    client: TestClient,
    admin: Headers,
    container: Container,
    create_customer: Callable[..., Json],
    body: Json,
    status: int,
) -> None:
    created = create_customer(value_tier="mass", segments=["keep"])
    response = client.patch(f"/v1/customers/{created['id']}", json=body, headers=admin)
    assert response.status_code == status
    row = _stored(container, created["id"])
    assert row["version"] == created["version"]
    assert row["value_tier"] == "mass"
    assert _segments(container, created["id"]) == {"keep"}


def test_patch_unknown_customer_is_404(client: TestClient, admin: Headers) -> None:
    response = client.patch("/v1/customers/NOPE", json={"first_name": "X"}, headers=admin)
    assert response.status_code == 404


# ------------------------------------------------------------------------------------ consent


def _current(view: Json, channel: str, purpose: str) -> Json:
    matches = [c for c in view["current"] if (c["channel"], c["purpose"]) == (channel, purpose)]
    assert len(matches) == 1
    return matches[0]


def test_withdrawal_after_grant_is_the_current_state_and_the_ledger_keeps_both(
    client: TestClient, admin: Headers, container: Container, create_customer: Callable[..., Json]
) -> None:
    cid = create_customer()["id"]
    grant = {
        "channel": "email",
        "purpose": "marketing",
        "granted": True,
        "effective_at": "2026-01-10T09:00:00Z",
    }
    withdraw = {**grant, "granted": False, "effective_at": "2026-02-10T09:00:00Z"}

    assert client.post(f"/v1/customers/{cid}/consents", json=grant, headers=admin).status_code == 201
    response = client.post(f"/v1/customers/{cid}/consents", json=withdraw, headers=admin)

    assert response.status_code == 201, response.text
    assert _current(response.json(), "email", "marketing")["granted"] is False
    view = client.get(f"/v1/customers/{cid}/consents", headers=admin).json()
    assert _current(view, "email", "marketing")["granted"] is False
    assert [e["granted"] for e in view["ledger"]] == [True, False]
    with container.reader() as conn:
        stored = conn.execute(
            select(consents.c.granted).where(consents.c.customer_id == cid).order_by(consents.c.id)
        ).scalars()
        assert list(stored) == [True, False]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # (granted, effective_at) in insertion order; the later effective_at wins.
        ((True, "2026-01-01T00:00:00Z"), (False, "2026-03-01T00:00:00Z"), False),
        ((False, "2026-03-01T00:00:00Z"), (True, "2026-01-01T00:00:00Z"), False),
        ((False, "2026-01-01T00:00:00Z"), (True, "2026-03-01T00:00:00Z"), True),
        ((True, "2026-03-01T00:00:00Z"), (False, "2026-01-01T00:00:00Z"), True),
        # A tie: the withdrawal wins, whatever came first.
        ((False, "2026-03-01T00:00:00Z"), (True, "2026-03-01T02:00:00+02:00"), False),
        ((True, "2026-03-01T00:00:00Z"), (False, "2026-03-01T02:00:00+02:00"), False),
    ],
)
def test_latest_effective_at_wins_regardless_of_insertion_order(
    client: TestClient,
    admin: Headers,
    create_customer: Callable[..., Json],
    count: Callable[[Table], int],
    first: tuple[bool, str],
    second: tuple[bool, str],
    expected: bool,
) -> None:
    cid = create_customer()["id"]
    for granted, at in (first, second):
        body = {"channel": "sms", "purpose": "marketing", "granted": granted, "effective_at": at}
        assert client.post(f"/v1/customers/{cid}/consents", json=body, headers=admin).status_code == 201
    view = client.get(f"/v1/customers/{cid}/consents", headers=admin).json()
    assert _current(view, "sms", "marketing")["granted"] is expected
    assert len(view["ledger"]) == 2
    assert count(consents) == 2


@pytest.mark.parametrize(("status", "service_granted"), [("prospect", False), ("client", True)])
def test_default_service_consent_rests_on_the_contract_for_clients_only(
    client: TestClient,
    admin: Headers,
    create_customer: Callable[..., Json],
    status: str,
    service_granted: bool,
) -> None:
    cid = create_customer(status=status)["id"]
    view = client.get(f"/v1/customers/{cid}/consents", headers=admin).json()
    assert view["ledger"] == []
    for channel in CHANNELS:
        service = _current(view, channel, "service")
        assert service["granted"] is service_granted
        assert service["legal_basis"] == ("contract" if service_granted else "none")
        assert _current(view, channel, "marketing")["granted"] is False


def test_consent_for_an_unknown_customer_is_404_and_not_stored(
    client: TestClient, admin: Headers, count: Callable[[Table], int]
) -> None:
    body = {"channel": "sms", "purpose": "marketing", "granted": True}
    assert client.post("/v1/customers/NOPE/consents", json=body, headers=admin).status_code == 404
    assert count(consents) == 0


# ------------------------------------------------------------------------------------ mass update


def test_mass_update_dry_run_counts_and_the_real_run_changes_exactly_the_matching_profiles(
    client: TestClient,
    admin: Headers,
    container: Container,
    create_customer: Callable[..., Json],
    audit_actions: Callable[[str], int],
) -> None:
    matching = [create_customer(status="client", branch="kyiv-01", value_tier="mass")["id"] for _ in range(3)]
    others = [
        create_customer(status="client", branch="lviv-02", value_tier="mass")["id"],
        create_customer(status="prospect", branch="kyiv-01", value_tier="mass")["id"],
        create_customer(status="client", branch="kyiv-01", value_tier="premium")["id"],
    ]
    every = matching + others
    before = {cid: _stored(container, cid) for cid in every}
    body = {
        "filter": {"status": "client", "branch": "kyiv-01", "value_tier": "mass"},
        "set": {"value_tier": "affluent", "add_segment": "upgraded", "relationship_manager": "Marta"},
        "reason": "quarterly re-tiering",
    }

    dry = client.post("/v1/customers:mass-update", json=body, headers=admin)

    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    assert dry.json()["matched"] == 3
    assert dry.json()["updated"] == 0
    assert {cid: _stored(container, cid) for cid in every} == before
    assert all(_segments(container, cid) == set() for cid in every)
    assert audit_actions("customer.mass_update") == 0

    real = client.post("/v1/customers:mass-update", json={**body, "dry_run": False}, headers=admin)

    assert real.status_code == 200, real.text
    assert (real.json()["matched"], real.json()["updated"]) == (3, 3)
    for cid in matching:
        row = _stored(container, cid)
        assert (row["value_tier"], row["relationship_manager"]) == ("affluent", "Marta")
        assert _segments(container, cid) == {"upgraded"}
    for cid in others:
        assert _stored(container, cid) == before[cid]
        assert _segments(container, cid) == set()
    assert audit_actions("customer.mass_update") == 1


def test_mass_update_skips_merged_profiles_and_filters_by_product(
    client: TestClient, admin: Headers, container: Container, create_customer: Callable[..., Json]
) -> None:
    survivor = create_customer(
        status="client",
        branch="odesa-03",
        products=[{"product_class": "deposit", "contract_number": "D-1", "state": "active"}],
    )["id"]
    merged = create_customer(status="prospect", branch="odesa-03")["id"]
    closed = create_customer(
        status="client",
        branch="odesa-03",
        products=[{"product_class": "deposit", "contract_number": "D-2", "state": "closed"}],
    )["id"]
    assert (
        client.post(f"/v1/customers/{survivor}/merge", json={"other_id": merged}, headers=admin).status_code
        == 200
    )

    body = {
        "filter": {"branch": "odesa-03", "has_product": "deposit"},
        "set": {"language": "en"},
        "dry_run": False,
        "reason": "deposit holders",
    }
    result = client.post("/v1/customers:mass-update", json=body, headers=admin).json()

    assert result["matched"] == 1
    assert _stored(container, survivor)["language"] == "en"
    assert _stored(container, merged)["language"] is None
    assert _stored(container, closed)["language"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"filter": {}, "set": {}, "reason": "nothing to set"},
        {"filter": {"colour": "red"}, "set": {"language": "en"}, "reason": "bad filter"},
        {"filter": {}, "set": {"status": "client"}, "reason": "status is not settable"},
        {"filter": {}, "set": {"language": "en"}, "reason": "x"},
    ],
)
def test_invalid_mass_update_is_422_and_changes_nothing(
    client: TestClient,
    admin: Headers,
    container: Container,
    create_customer: Callable[..., Json],
    body: Json,
) -> None:
    cid = create_customer(language="uk")["id"]
    response = client.post("/v1/customers:mass-update", json={**body, "dry_run": False}, headers=admin)
    assert response.status_code == 422
    assert _stored(container, cid)["language"] == "uk"


# ------------------------------------------------------------------------------------ roles


Body = Callable[[str], Json | None]


def _routes(
    customer_id: str, make_event: Callable[..., Json]
) -> list[tuple[str, str, Body, Permission, int]]:
    """(method, path, body(uid), permission, status when allowed) for each route checked."""
    cid = customer_id
    return [
        ("GET", f"/v1/customers/{cid}", lambda _: None, Permission.READ_PROFILE, 200),
        (
            "GET",
            "/v1/customers/lookup?kind=cbs_id&value=ROLE-1",
            lambda _: None,
            Permission.READ_PROFILE,
            200,
        ),
        ("GET", f"/v1/customers/{cid}/consents", lambda _: None, Permission.READ_PROFILE, 200),
        (
            "POST",
            "/v1/customers",
            lambda uid: {"identifiers": [{"kind": "cbs_id", "value": f"ROLE-{uid}"}]},
            Permission.WRITE_PROFILE,
            201,
        ),
        ("PATCH", f"/v1/customers/{cid}", lambda _: {"first_name": "Roman"}, Permission.WRITE_PROFILE, 200),
        (
            "POST",
            f"/v1/customers/{cid}/consents",
            lambda _: {"channel": "sms", "purpose": "marketing", "granted": True},
            Permission.WRITE_CONSENT,
            201,
        ),
        (
            "POST",
            "/v1/customers:mass-update",
            lambda _: {"filter": {}, "set": {"language": "uk"}, "reason": "role check"},
            Permission.MASS_UPDATE,
            200,
        ),
        ("GET", f"/v1/customers/{cid}/timeline", lambda _: None, Permission.READ_TIMELINE, 200),
        ("POST", f"/v1/customers/{cid}/unmerge", lambda _: None, Permission.MERGE_PROFILES, 409),
        ("POST", "/v1/events", lambda _: make_event(customer_id=cid), Permission.WRITE_EVENTS, 201),
        (
            "POST",
            "/v1/events:batch",
            lambda _: {"items": [make_event(customer_id=cid)]},
            Permission.WRITE_EVENTS,
            200,
        ),
        (
            "POST",
            "/v1/interactions",
            lambda _: make_event("crm.branch.visit", source="branch", customer_id=cid),
            Permission.WRITE_INTERACTIONS,
            201,
        ),
        (
            "POST",
            "/v1/interactions:batch",
            lambda _: {"items": [make_event("crm.branch.visit", source="branch", customer_id=cid)]},
            Permission.WRITE_INTERACTIONS,
            200,
        ),
        ("GET", "/v1/audit", lambda _: None, Permission.READ_AUDIT, 200),
        ("GET", "/v1/catalogue/events", lambda _: None, Permission.READ_CATALOGUE, 200),
        (
            "POST",
            "/v1/users",
            lambda uid: {"username": f"user-{uid}", "role": "operator"},
            Permission.MANAGE_USERS,
            201,
        ),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_follows_role_permissions(
    client: TestClient,
    headers_for: Callable[[str], Headers],
    create_customer: Callable[..., Json],
    make_event: Callable[..., Json],
    role: str,
) -> None:
    customer_id = create_customer(identifiers=[{"kind": "cbs_id", "value": "ROLE-1"}])["id"]
    headers = headers_for(role)
    wrong = []
    for number, (method, path, body, permission, success) in enumerate(_routes(customer_id, make_event)):
        response = client.request(method, path, json=body(f"{role}-{number}"), headers=headers)
        expected = success if permission in ROLE_PERMISSIONS[role] else 403
        if response.status_code != expected:
            wrong.append((method, path, expected, response.status_code, response.text[:200]))
    assert wrong == []


@pytest.mark.parametrize(
    ("role", "permission", "held"),
    [
        ("auditor", Permission.READ_PROFILE, False),
        ("auditor", Permission.READ_AUDIT, True),
        ("operator", Permission.MASS_UPDATE, False),
        ("marketer", Permission.MASS_UPDATE, True),
        ("integration", Permission.READ_AUDIT, False),
        ("integration", Permission.READ_TIMELINE, False),
        ("integration", Permission.WRITE_EVENTS, True),
        ("operator", Permission.WRITE_EVENTS, False),
        ("compliance", Permission.MERGE_PROFILES, True),
        ("marketer", Permission.WRITE_PROFILE, False),
    ],
)
def test_the_role_table_says_what_the_readme_says(role: str, permission: Permission, held: bool) -> None:
    assert (permission in ROLE_PERMISSIONS[role]) is held


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("auditor", "GET", "/v1/customers/{cid}", None),
        ("auditor", "GET", "/v1/customers/{cid}/timeline", None),
        (
            "operator",
            "POST",
            "/v1/customers:mass-update",
            {"filter": {}, "set": {"language": "en"}, "reason": "x1x"},
        ),
        ("integration", "GET", "/v1/audit", None),
        ("integration", "GET", "/v1/customers/{cid}/timeline", None),
        ("marketer", "POST", "/v1/customers", {"identifiers": [{"kind": "cbs_id", "value": "M-1"}]}),
        ("operator", "POST", "/v1/customers/{cid}/merge", {"other_id": "{cid}"}),
        ("compliance", "PATCH", "/v1/customers/{cid}", {"first_name": "Z"}),
    ],
)
def test_documented_refusals_are_403_and_write_nothing(
    client: TestClient,
    headers_for: Callable[[str], Headers],
    create_customer: Callable[..., Json],
    state_counts: Callable[[], dict[str, int]],
    container: Container,
    role: str,
    method: str,
    path: str,
    body: Json | None,
) -> None:
    created = create_customer(language="uk")
    cid = created["id"]
    if body is not None:
        body = {k: (v.replace("{cid}", cid) if isinstance(v, str) else v) for k, v in body.items()}
    before = state_counts()

    response = client.request(method, path.replace("{cid}", cid), json=body, headers=headers_for(role))

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:omnicrm:problem:forbidden"
    assert state_counts() == before
    row = _stored(container, cid)
    assert (row["version"], row["language"], row["first_name"]) == (created["version"], "uk", None)


_ANY_ROUTES = [
    ("GET", "/v1/me"),
    ("GET", "/v1/customers/X"),
    ("GET", "/v1/customers/lookup?kind=phone&value=%2B380671234567"),
    ("POST", "/v1/customers"),
    ("PATCH", "/v1/customers/X"),
    ("POST", "/v1/customers/X/identifiers"),
    ("GET", "/v1/customers/X/consents"),
    ("POST", "/v1/customers/X/consents"),
    ("POST", "/v1/customers/X/merge"),
    ("POST", "/v1/customers/X/unmerge"),
    ("GET", "/v1/customers/X/timeline"),
    ("POST", "/v1/customers:mass-update"),
    ("POST", "/v1/events"),
    ("POST", "/v1/events:batch"),
    ("POST", "/v1/interactions"),
    ("POST", "/v1/interactions:batch"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/catalogue/events"),
    ("POST", "/v1/users"),
    ("POST", "/v1/users/x/tokens"),
]


@pytest.mark.parametrize("authorization", [None, "Bearer ocrm_forged-token", "Basic YWRtaW46YWRtaW4="])
def test_every_v1_route_needs_a_valid_token(
    client: TestClient, state_counts: Callable[[], dict[str, int]], authorization: str | None
) -> None:
    before = state_counts()
    headers = {"Authorization": authorization} if authorization else {}
    wrong = []
    for method, path in _ANY_ROUTES:
        body = {"identifiers": [{"kind": "cbs_id", "value": "NOAUTH-1"}]} if method != "GET" else None
        response = client.request(method, path, json=body, headers=headers)
        if response.status_code != 401 or response.headers.get("www-authenticate") != "Bearer":
            wrong.append((method, path, response.status_code))
    assert wrong == []
    assert state_counts() == before


def test_products_in_a_profile_are_stored(
    client: TestClient, create_customer: Callable[..., Json], count: Callable[[Table], int]
) -> None:
    created = create_customer(
        status="client",
        products=[
            {
                "product_class": "card",
                "contract_number": "CARD-9",
                "state": "issued",
                "terms": {"limit": 5000},
            },
            {"product_class": "deposit", "contract_number": "DEP-9", "state": "active"},
        ],
    )
    assert sorted(p["contract_number"] for p in created["products"]) == ["CARD-9", "DEP-9"]
    assert count(products) == 2
