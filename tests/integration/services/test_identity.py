"""Identity reconciliation end to end: merge by shared identifiers, survivorship, unmerge, audit chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, delete, func, select, update

from omnicrm.bootstrap import Container
from omnicrm.store.merging import OWNED
from omnicrm.store.tables import audit_log, customers, events, identifiers, merges, products, segments

Headers = dict[str, str]
Json = dict[str, Any]
PHONE = "+380671234567"
VOLATILE = ("updated_at", "version", "requested_id")


def _owned(container: Container) -> dict[str, dict[Any, tuple[str, str]]]:
    """table -> {primary key: (customer_id, origin_id)} for every row a merge moves."""
    found: dict[str, dict[Any, tuple[str, str]]] = {}
    with container.reader() as conn:
        for table in OWNED:
            key = [c for c in table.primary_key.columns]
            rows = conn.execute(select(*key, table.c.customer_id, table.c.origin_id)).all()
            found[table.name] = {tuple(r[: len(key)]): (r.customer_id, r.origin_id) for r in rows}
    return found


def _segments(container: Container) -> set[tuple[str, str]]:
    with container.reader() as conn:
        return {(r.customer_id, r.segment) for r in conn.execute(select(segments))}


def _row(container: Container, customer_id: str) -> Json:
    with container.reader() as conn:
        return dict(conn.execute(select(customers).where(customers.c.id == customer_id)).one()._mapping)


def _stable(profile: Json) -> Json:
    return {k: v for k, v in profile.items() if k not in VOLATILE}


def _owner_of(container: Container, table: Table, **where: Any) -> set[str]:
    query = select(table.c.customer_id)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with container.reader() as conn:
        return set(conn.execute(query).scalars())


class People:
    """A prospect known by a cookie and a client known by a phone: the same person, not yet linked."""

    def __init__(self, client: TestClient, admin: Headers, make_event: Callable[..., Json]) -> None:
        self.client, self.admin, self.make_event = client, admin, make_event
        prospect = self._post(
            {
                "identifiers": [{"kind": "cookie_id", "value": "ck-p"}],
                "first_name": "Petro",
                "middle_name": "Ivanovych",
                "value_tier": "premium",
                "timezone": "Europe/Kyiv",
                "segments": ["web-visitor"],
                "constraints": {"do_not_contact": True, "channel_blacklist": ["sms"]},
                "consents": [
                    {
                        "channel": "email",
                        "purpose": "marketing",
                        "granted": True,
                        "effective_at": "2026-09-01T10:00:00Z",
                    }
                ],
                "products": [{"product_class": "deposit", "contract_number": "DEP-P", "state": "applied"}],
            }
        )
        client_ = self._post(
            {
                "status": "client",
                "identifiers": [{"kind": "phone", "value": PHONE}, {"kind": "cbs_id", "value": "CBS-K"}],
                "first_name": "Petr",
                "last_name": "Shevchenko",
                "value_tier": "mass",
                "segments": ["salary"],
                "consents": [
                    {
                        "channel": "sms",
                        "purpose": "marketing",
                        "granted": True,
                        "effective_at": "2026-09-02T10:00:00Z",
                    }
                ],
                "products": [{"product_class": "card", "contract_number": "CARD-K", "state": "active"}],
            }
        )
        self.prospect, self.client_id = prospect["id"], client_["id"]
        self.events(
            [
                make_event(occurred_at="2026-10-01T10:00:00Z", identifiers={"cookie_id": "ck-p"}),
                make_event("auth.failed", "2026-10-01T11:00:00Z", identifiers={"cookie_id": "ck-p"}),
                make_event("auth.failed", "2026-10-01T12:00:00Z", identifiers={"phone": PHONE}),
            ]
        )

    def _post(self, body: Json) -> Json:
        response = self.client.post("/v1/customers", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        result: Json = response.json()
        return result

    def events(self, items: list[Json]) -> Json:
        response = self.client.post("/v1/events:batch", json={"items": items}, headers=self.admin)
        assert response.status_code == 200, response.text
        result: Json = response.json()
        return result

    def link(self) -> Json:
        """The event that reveals both identifiers belong to one person."""
        return self.events(
            [
                self.make_event(
                    occurred_at="2026-10-02T10:00:00Z", identifiers={"cookie_id": "ck-p", "phone": PHONE}
                )
            ]
        )

    def get(self, customer_id: str) -> Json:
        response = self.client.get(f"/v1/customers/{customer_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        result: Json = response.json()
        return result


@pytest.fixture
def people(client: TestClient, admin: Headers, make_event: Callable[..., Json]) -> People:
    return People(client, admin, make_event)


# ------------------------------------------------------------------------------------ merge


def test_an_event_with_both_identifiers_merges_the_prospect_into_the_client(
    people: People, container: Container, count: Callable[[Table], int]
) -> None:
    before = _owned(container)
    p, k = people.prospect, people.client_id

    result = people.link()

    assert result["merges"] == 1
    assert result["items"][0]["customer_id"] == k
    assert count(merges) == 1
    assert _row(container, p)["merged_into"] == k
    assert _row(container, k)["merged_into"] is None
    after = _owned(container)
    for table, rows in before.items():
        prospect_rows = [key for key, (_, origin) in rows.items() if origin == p]
        assert prospect_rows or table == "relationships", table
        assert all(after[table][key][0] == k for key in prospect_rows), table
    survivor = people.get(k)
    assert survivor["merged_from"] == [p]
    assert {(i["kind"], i["value"]) for i in survivor["identifiers"]} == {
        ("cookie_id", "ck-p"),
        ("phone", PHONE),
        ("cbs_id", "CBS-K"),
        ("contract", "DEP-P"),
        ("contract", "CARD-K"),
    }
    assert sorted(x["contract_number"] for x in survivor["products"]) == ["CARD-K", "DEP-P"]
    followed = people.get(p)
    assert followed["id"] == k
    assert followed["requested_id"] == p
    looked_up = people.client.get(
        "/v1/customers/lookup", params={"kind": "cookie_id", "value": "ck-p"}, headers=people.admin
    )
    assert looked_up.json()["id"] == k
    timeline = people.client.get(f"/v1/customers/{p}/timeline", headers=people.admin).json()
    assert timeline["customer_id"] == k
    assert len(timeline["items"]) == 4


def test_merge_applies_survivorship(people: People, container: Container) -> None:
    people.link()
    row = _row(container, people.client_id)
    assert row["status"] == "client"
    assert (row["first_name"], row["last_name"]) == ("Petr", "Shevchenko")  # the survivor's own names stay
    assert (row["middle_name"], row["timezone"]) == ("Ivanovych", "Europe/Kyiv")  # empty ones are filled
    assert row["value_tier"] == "premium"
    assert row["do_not_contact"] is True
    assert row["channel_blacklist"] == ["sms"]
    assert {s for c, s in _segments(container) if c == people.client_id} == {"salary", "web-visitor"}
    assert not {s for c, s in _segments(container) if c == people.prospect}


def test_attaching_an_identifier_held_by_another_profile_merges_them(
    people: People, container: Container
) -> None:
    response = people.client.post(
        f"/v1/customers/{people.prospect}/identifiers",
        json={"kind": "phone", "value": "067 123 45 67"},
        headers=people.admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == people.client_id
    assert _row(container, people.prospect)["merged_into"] == people.client_id


@pytest.mark.parametrize(
    ("target", "other", "status"),
    [
        ("self", "self", 409),
        ("client", "missing", 404),
        ("missing", "client", 404),
        ("client", "merged", 409),
    ],
)
def test_impossible_merges_are_refused_and_change_nothing(
    people: People, container: Container, target: str, other: str, status: int
) -> None:
    people.link()
    names = {
        "self": people.client_id,
        "client": people.client_id,
        "merged": people.prospect,
        "missing": "01NOSUCHCUSTOMER0000000000",
    }
    before = (_owned(container), _segments(container))
    response = people.client.post(
        f"/v1/customers/{names[target]}/merge", json={"other_id": names[other]}, headers=people.admin
    )
    assert response.status_code == status, response.text
    assert (_owned(container), _segments(container)) == before


# ------------------------------------------------------------------------------------ unmerge


def test_unmerge_gives_back_exactly_what_came_from_the_merged_profile(
    people: People, container: Container, make_event: Callable[..., Json], count: Callable[[Table], int]
) -> None:
    p, k = people.prospect, people.client_id
    profiles_before = {cid: _stable(people.get(cid)) for cid in (p, k)}
    rows_before, segments_before = _owned(container), _segments(container)
    people.link()
    later = people.events(
        [
            make_event("auth.failed", "2026-10-03T10:00:00Z", identifiers={"cookie_id": "ck-p"}),
            make_event("auth.failed", "2026-10-03T11:00:00Z", identifiers={"phone": PHONE}),
        ]
    )
    after_cookie, after_phone = (i["event_id"] for i in later["items"])
    assert {i["customer_id"] for i in later["items"]} == {k}

    response = people.client.post(f"/v1/customers/{p}/unmerge", headers=people.admin)

    assert response.status_code == 200, response.text
    assert response.json()["restored"]["id"] == p
    assert response.json()["survivor"]["id"] == k
    for cid in (p, k):
        assert _stable(people.get(cid)) == profiles_before[cid], cid
    rows_after = _owned(container)
    for table, rows in rows_before.items():
        assert {key: rows_after[table][key] for key in rows} == rows, table
    assert all(owner == origin for rows in rows_after.values() for owner, origin in rows.values())
    assert _owner_of(container, events, event_id=after_cookie) == {p}
    assert _owner_of(container, events, event_id=after_phone) == {k}
    assert _segments(container) == segments_before
    assert _row(container, p)["merged_into"] is None
    assert count(merges) == 1
    with container.reader() as conn:
        assert conn.execute(select(merges.c.undone_at)).scalar_one() is not None
    lookup = people.client.get(
        "/v1/customers/lookup", params={"kind": "cookie_id", "value": "ck-p"}, headers=people.admin
    )
    assert lookup.json()["id"] == p


def test_unmerge_gives_back_events_addressed_to_the_merged_id_after_the_merge(
    people: People, container: Container, make_event: Callable[..., Json]
) -> None:
    people.link()
    later = people.events([make_event("auth.failed", "2026-10-03T10:00:00Z", customer_id=people.prospect)])
    event_id = later["items"][0]["event_id"]
    assert (
        people.client.post(f"/v1/customers/{people.prospect}/unmerge", headers=people.admin).status_code
        == 200
    )
    assert _owner_of(container, events, event_id=event_id) == {people.prospect}


def test_unmerge_gives_back_identifiers_first_seen_through_the_merged_profile(
    people: People, container: Container, make_event: Callable[..., Json]
) -> None:
    people.link()
    people.events([make_event(identifiers={"cookie_id": "ck-p", "device_id": "dev-new"})])
    assert (
        people.client.post(f"/v1/customers/{people.prospect}/unmerge", headers=people.admin).status_code
        == 200
    )
    assert _owner_of(container, identifiers, kind="device_id", value="dev-new") == {people.prospect}


def test_unmerge_gives_back_products_opened_through_the_merged_profile(
    people: People, container: Container, make_event: Callable[..., Json]
) -> None:
    people.link()
    opened = make_event(
        "product.opened",
        source="core_banking",
        identifiers={"cookie_id": "ck-p"},
        attributes={"product_class": "current_account", "contract_number": "ACC-LATE"},
    )
    people.events([opened])
    assert (
        people.client.post(f"/v1/customers/{people.prospect}/unmerge", headers=people.admin).status_code
        == 200
    )
    assert _owner_of(container, events, event_id=opened["event_id"]) == {people.prospect}
    assert _owner_of(container, products, contract_number="ACC-LATE") == {people.prospect}


def test_unmerge_of_a_profile_that_is_not_merged_is_409(people: People, container: Container) -> None:
    before = _owned(container)
    for cid in (people.prospect, people.client_id):
        response = people.client.post(f"/v1/customers/{cid}/unmerge", headers=people.admin)
        assert response.status_code == 409
        assert response.json()["type"] == "urn:omnicrm:problem:conflict"
    people.link()
    assert (
        people.client.post(f"/v1/customers/{people.client_id}/unmerge", headers=people.admin).status_code
        == 409
    )
    assert (
        people.client.post(f"/v1/customers/{people.prospect}/unmerge", headers=people.admin).status_code
        == 200
    )
    assert (
        people.client.post(f"/v1/customers/{people.prospect}/unmerge", headers=people.admin).status_code
        == 409
    )
    assert _owned(container).keys() == before.keys()


def test_unmerge_in_a_chain_gives_the_middle_profile_its_own_and_its_merged_rows(
    client: TestClient, admin: Headers, container: Container, make_event: Callable[..., Json]
) -> None:
    def create(body: Json) -> str:
        response = client.post("/v1/customers", json=body, headers=admin)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    b = create({"identifiers": [{"kind": "device_id", "value": "dev-b"}], "first_name": "Bohdan"})
    a = create({"identifiers": [{"kind": "cookie_id", "value": "ck-a"}], "segments": ["from-a"]})
    c = create({"status": "client", "identifiers": [{"kind": "phone", "value": PHONE}]})
    batch = [
        make_event(identifiers={"cookie_id": "ck-a"}, event_id="ev-a"),
        make_event(identifiers={"device_id": "dev-b"}, event_id="ev-b"),
        make_event(identifiers={"phone": PHONE}, event_id="ev-c"),
    ]
    assert client.post("/v1/events:batch", json={"items": batch}, headers=admin).status_code == 200

    first = client.post(f"/v1/customers/{b}/merge", json={"other_id": a}, headers=admin)
    assert first.json()["id"] == b  # two prospects: the older one survives
    second = client.post(f"/v1/customers/{c}/merge", json={"other_id": b}, headers=admin)
    assert second.json()["id"] == c  # the client survives
    assert client.get(f"/v1/customers/{a}", headers=admin).json()["id"] == c
    assert _owner_of(container, events) == {c}

    response = client.post(f"/v1/customers/{b}/unmerge", headers=admin)

    assert response.status_code == 200, response.text
    restored = response.json()["restored"]
    assert restored["id"] == b
    assert restored["merged_from"] == [a]
    assert {(i["kind"], i["value"]) for i in restored["identifiers"]} == {
        ("device_id", "dev-b"),
        ("cookie_id", "ck-a"),
    }
    assert restored["segments"] == ["from-a"]
    assert {i["value"] for i in response.json()["survivor"]["identifiers"]} == {PHONE}
    assert _owner_of(container, events, event_id="ev-a") == {b}
    assert _owner_of(container, events, event_id="ev-b") == {b}
    assert _owner_of(container, events, event_id="ev-c") == {c}
    assert client.get(f"/v1/customers/{a}", headers=admin).json()["id"] == b

    assert client.post(f"/v1/customers/{a}/unmerge", headers=admin).status_code == 200
    assert _owner_of(container, events, event_id="ev-a") == {a}
    assert _owner_of(container, identifiers, kind="cookie_id") == {a}
    assert client.get(f"/v1/customers/{a}", headers=admin).json()["segments"] == ["from-a"]
    assert client.get(f"/v1/customers/{b}", headers=admin).json()["segments"] == []


# ------------------------------------------------------------------------------------ survivorship


@pytest.mark.parametrize(
    ("survivor", "merged", "expected"),
    [
        ({}, {"constraints": {"do_not_contact": True}}, {"do_not_contact": True}),
        ({"constraints": {"do_not_contact": True}}, {}, {"do_not_contact": True}),
        (
            {},
            {"constraints": {"vulnerable": True, "fraud_case_open": True}},
            {"vulnerable": True, "fraud_case_open": True},
        ),
        ({}, {}, {"do_not_contact": False, "vulnerable": False, "fraud_case_open": False}),
        ({"value_tier": "mass"}, {"value_tier": "private"}, {"value_tier": "private"}),
        ({"value_tier": "premium"}, {"value_tier": "affluent"}, {"value_tier": "premium"}),
        ({}, {"value_tier": "affluent"}, {"value_tier": "affluent"}),
        (
            {"first_name": "Olha"},
            {"first_name": "Olga", "last_name": "Melnyk", "middle_name": "Petrivna"},
            {"first_name": "Olha", "last_name": "Melnyk", "middle_name": "Petrivna"},
        ),
        (
            {"language": "uk"},
            {"language": "en", "branch": "lviv-02"},
            {"language": "uk", "branch": "lviv-02"},
        ),
        (
            {"constraints": {"channel_blacklist": ["sms"]}},
            {"constraints": {"channel_blacklist": ["email", "sms"]}},
            {"channel_blacklist": ["email", "sms"]},
        ),
        ({"date_of_birth": "1990-05-01"}, {"date_of_birth": "1991-01-01"}, {"date_of_birth": "1990-05-01"}),
    ],
)
def test_survivorship_rules_and_their_undo(
    client: TestClient,
    admin: Headers,
    container: Container,
    create_customer: Callable[..., Json],
    survivor: Json,
    merged: Json,
    expected: Json,
) -> None:
    kept = create_customer(status="client", **survivor)["id"]
    folded = create_customer(status="prospect", **merged)["id"]
    before = _row(container, kept)

    response = client.post(f"/v1/customers/{folded}/merge", json={"other_id": kept}, headers=admin)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == kept  # a client survives a prospect, whoever asks
    row = _row(container, kept)
    got = {k: row[k].isoformat() if k == "date_of_birth" else row[k] for k in expected}
    assert got == expected
    assert client.post(f"/v1/customers/{folded}/unmerge", headers=admin).status_code == 200
    reverted = _row(container, kept)
    assert {k: v for k, v in reverted.items() if k not in VOLATILE} == {
        k: v for k, v in before.items() if k not in VOLATILE
    }


def test_complaint_counts_add_up_on_merge_and_split_on_unmerge(
    client: TestClient, admin: Headers, container: Container, make_event: Callable[..., Json]
) -> None:
    items = [
        make_event(
            "crm.complaint.registered",
            source="crm",
            identifiers={"cbs_id": cbs},
            attributes={"complaint_id": f"{cbs}-{n}", "topic": "fees"},
        )
        for cbs, n in (("K", 1), ("P", 1), ("P", 2))
    ]
    owners = client.post("/v1/interactions:batch", json={"items": items}, headers=admin).json()["items"]
    k, p = owners[0]["customer_id"], owners[1]["customer_id"]
    client.patch(f"/v1/customers/{k}", json={"status": "client"}, headers=admin)

    client.post(f"/v1/customers/{k}/merge", json={"other_id": p}, headers=admin)
    assert _row(container, k)["open_complaints"] == 3

    client.post(f"/v1/customers/{p}/unmerge", headers=admin)
    assert (_row(container, k)["open_complaints"], _row(container, p)["open_complaints"]) == (1, 2)


# ------------------------------------------------------------------------------------ audit


def test_merge_and_unmerge_are_in_an_intact_audit_chain(
    people: People, headers_for: Callable[[str], Headers]
) -> None:
    people.link()
    people.client.post(f"/v1/customers/{people.prospect}/unmerge", headers=people.admin)

    response = people.client.get("/v1/audit", headers=headers_for("auditor"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["chain_intact"] is True
    assert body["entries_checked"] == len(body["items"])
    merged = [i for i in body["items"] if i["action"] == "customer.merged"]
    unmerged = [i for i in body["items"] if i["action"] == "customer.unmerged"]
    assert len(merged) == 1
    assert len(unmerged) == 1
    assert merged[0]["target"] == people.client_id
    assert merged[0]["details"]["merged_id"] == people.prospect
    assert unmerged[0]["target"] == people.prospect
    assert unmerged[0]["details"]["survivor_id"] == people.client_id
    filtered = people.client.get(
        "/v1/audit", params={"action": "customer.merged"}, headers=people.admin
    ).json()
    assert [i["id"] for i in filtered["items"]] == [merged[0]["id"]]


def _tamper(container: Container, how: str) -> None:
    # a writer's transaction (BEGIN IMMEDIATE on SQLite): it reads, then writes, beside the API's
    # decision worker, and a deferred one would be refused as soon as that worker commits
    with container.uow() as uow:
        conn = uow.conn
        target = conn.execute(
            select(audit_log.c.id).where(audit_log.c.action == "customer.merged")
        ).scalar_one()
        if how == "actor":
            conn.execute(update(audit_log).where(audit_log.c.id == target).values(actor="mallory"))
        elif how == "details":
            conn.execute(
                update(audit_log).where(audit_log.c.id == target).values(details={"merged_id": "someone"})
            )
        elif how == "delete":
            conn.execute(delete(audit_log).where(audit_log.c.id == target))
        elif how == "rehash-last":
            last = conn.execute(select(func.max(audit_log.c.id))).scalar_one()
            conn.execute(update(audit_log).where(audit_log.c.id == last).values(hash="0" * 64))
        uow.commit()


@pytest.mark.parametrize("how", ["actor", "details", "delete", "rehash-last"])
def test_tampering_with_the_audit_log_breaks_the_chain(
    people: People, container: Container, how: str
) -> None:
    people.link()
    people.client.post(f"/v1/customers/{people.prospect}/unmerge", headers=people.admin)
    assert people.client.get("/v1/audit", headers=people.admin).json()["chain_intact"] is True

    _tamper(container, how)

    assert people.client.get("/v1/audit", headers=people.admin).json()["chain_intact"] is False
