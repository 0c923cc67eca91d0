"""File import of events, interactions and profiles: validation with line numbers, idempotency, progress.

Every test runs with event files validated in this process and in a forked reader process."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Table, select

from omnicrm.bootstrap import Container
from omnicrm.domain.errors import InvalidInput
from omnicrm.services.contracts import CustomerIn
from omnicrm.services.intake import import_files
from omnicrm.services.intake.importer import ImportReport, import_customers, import_events
from omnicrm.services.intake.ingest import EVENT_KINDS, INTERACTION_KINDS
from omnicrm.services.profiles.customers import upsert
from omnicrm.sim.generate import DatasetSize, generate, write_dataset
from omnicrm.store import audit
from omnicrm.store.tables import consents, customers, events, identifiers, products, relationships, segments

Json = dict[str, Any]


@pytest.fixture(autouse=True, params=["in-process", "forked"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where event files are validated: every file in this process, or every file in a second one."""
    monkeypatch.setattr(import_files, "PARALLEL_FROM_BYTES", 1 << 62 if request.param == "in-process" else 0)
    return str(request.param)


CSV_COLUMNS = ["event_id", "type", "occurred_at", "source", "channel", "identifiers.cookie_id", "attributes"]


def _event(n: int, **overrides: Any) -> Json:
    event: Json = {
        "event_id": f"imp-{n}",
        "type": "tariff_page.visited",
        "occurred_at": f"2026-10-01T10:{n % 60:02d}:00Z",
        "source": "web",
        "channel": "web",
        "identifiers": {"cookie_id": f"ck-{n % 3}"},
        "attributes": {"product_class": "deposit", "page": f"/deposits/{n}"},
    }
    event.update(overrides)
    return event


def _write_jsonl(path: Path, records: list[Json | str]) -> Path:
    lines = [r if isinstance(r, str) else orjson.dumps(r).decode() for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_csv(path: Path, records: list[Json | list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for r in records:
            if isinstance(r, list):
                writer.writerow(r)
                continue
            writer.writerow(
                [
                    r["event_id"],
                    r["type"],
                    r["occurred_at"],
                    r["source"],
                    r.get("channel", ""),
                    r["identifiers"]["cookie_id"],
                    orjson.dumps(r["attributes"]).decode(),
                ]
            )
    return path


def _write(tmp_path: Path, fmt: str, records: list[Any]) -> Path:
    return (
        _write_csv(tmp_path / "events.csv", records)
        if fmt == "csv"
        else _write_jsonl(tmp_path / "events.jsonl", records)
    )


def _events(container: Container, path: Path, kinds: frozenset[str] = EVENT_KINDS, **kw: Any) -> ImportReport:
    return import_events(container.uow, path, container.catalogue, kinds, actor="importer", **kw)


# ------------------------------------------------------------------------------------ events


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_import_events_stores_every_line(
    container: Container,
    tmp_path: Path,
    count: Callable[[Table], int],
    audit_actions: Callable[[str], int],
    fmt: str,
) -> None:
    records = [_event(n) for n in range(7)]
    path = _write(tmp_path, fmt, records)
    progress: list[int] = []

    report = _events(container, path, progress=progress.append)

    assert (report.lines, report.accepted, report.duplicates, report.customers_created) == (7, 7, 0, 3)
    assert sum(progress) == 7
    assert count(events) == 7
    assert count(customers) == 3
    with container.reader() as conn:
        stored = {r.event_id: r for r in conn.execute(select(events))}
        cookies = set(
            conn.execute(select(identifiers.c.value).where(identifiers.c.kind == "cookie_id")).scalars()
        )
    assert cookies == {"ck-0", "ck-1", "ck-2"}
    for record in records:
        row = stored[record["event_id"]]
        assert row.attributes == record["attributes"]
        assert (row.type, row.source, row.channel, row.kind) == (
            "tariff_page.visited",
            "web",
            "web",
            "behavioural",
        )
        assert row.occurred_at == datetime.fromisoformat(record["occurred_at"])
    assert audit_actions("import.events") == 1


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_reimporting_the_same_file_stores_nothing_new(
    container: Container, tmp_path: Path, state_counts: Callable[[], dict[str, int]], fmt: str
) -> None:
    path = _write(tmp_path, fmt, [_event(n) for n in range(5)])
    _events(container, path)
    after_first = state_counts()

    again = _events(container, path)

    assert (again.lines, again.accepted, again.duplicates, again.customers_created) == (5, 0, 5, 0)
    assert state_counts() == after_first


@pytest.mark.parametrize(
    ("fmt", "bad", "line", "field"),
    [
        ("jsonl", "{not json", 4, "(line)"),
        ("jsonl", _event(90, type="no.such.type"), 4, "type"),
        ("jsonl", _event(91, type="crm.call.completed"), 4, "type"),
        ("jsonl", _event(92, attributes={"product_class": "deposit"}), 4, "attributes.page"),
        ("jsonl", _event(93, occurred_at="2026-10-01 10:00"), 4, "occurred_at"),
        (
            "jsonl",
            _event(94, attributes={"product_class": "card", "page": "4111 1111 1111 1111"}),
            4,
            "attributes.page",
        ),
        ("jsonl", _event(95, identifiers={"phone": "+3800"}), 4, "identifiers.phone"),
        ("jsonl", _event(96, extra="field"), 4, "extra"),
        (
            "csv",
            ["c-1", "tariff_page.visited", "2026-10-01T10:00:00Z", "web", "", "ck-9", "{broken"],
            4,
            "attributes",
        ),
        ("csv", _event(97, attributes={"product_class": "deposit"}), 4, "attributes.page"),
        ("csv", _event(98, source="carrier-pigeon"), 4, "source"),
    ],
    ids=[
        "not-json",
        "unknown-type",
        "interaction-type",
        "missing-attribute",
        "naive-time",
        "card-number",
        "bad-phone",
        "extra-field",
        "csv-bad-attributes",
        "csv-missing-attribute",
        "csv-bad-source",
    ],
)
def test_a_bad_line_refuses_the_whole_file_with_its_line_number(
    container: Container,
    tmp_path: Path,
    state_counts: Callable[[], dict[str, int]],
    audit_actions: Callable[[str], int],
    fmt: str,
    bad: Any,
    line: int,
    field: str,
) -> None:
    good = [_event(n) for n in range(4)]
    if fmt == "jsonl":
        records: list[Any] = [good[0], "", good[1], bad, good[2], good[3]]  # line 2 is blank
    else:
        records = [good[0], good[1], bad, good[2], good[3]]  # the header is line 1
    path = _write(tmp_path, fmt, records)
    before = state_counts()

    with pytest.raises(InvalidInput) as caught:
        _events(container, path)

    assert {e.index for e in caught.value.errors} == {line}
    assert field in {e.field for e in caught.value.errors}, caught.value.errors
    assert f"{len({e.index for e in caught.value.errors})} of" in caught.value.detail
    assert state_counts() == before
    assert audit_actions("import.events") == 0


def test_every_bad_line_is_reported(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    records: list[Any] = [_event(n) for n in range(10)]
    records[1] = "{oops"
    records[5] = _event(5, type="nope.nope")
    records[8] = _event(8, attributes={})
    path = _write_jsonl(tmp_path / "many.jsonl", records)
    with pytest.raises(InvalidInput) as caught:
        _events(container, path)
    assert {e.index for e in caught.value.errors} == {2, 6, 9}
    assert count(events) == 0


def test_interactions_are_imported_only_from_an_interactions_file(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    calls = [
        _event(
            n,
            type="crm.call.completed",
            source="call_centre",
            channel="callcentre",
            attributes={"direction": "inbound", "disposition": "resolved"},
        )
        for n in range(3)
    ]
    path = _write_jsonl(tmp_path / "interactions.jsonl", calls)
    with pytest.raises(InvalidInput):
        _events(container, path, EVENT_KINDS)
    assert count(events) == 0
    assert _events(container, path, INTERACTION_KINDS).accepted == 3
    assert count(events) == 3


def test_campaign_events_are_not_imported(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    """Only an approved campaign's launch writes them; an imported one would start its scenario."""
    calls = [
        _event(0, type="crm.call.completed", attributes={"direction": "inbound", "disposition": "resolved"}),
        _event(1, type="crm.campaign.targeted", attributes={"campaign_id": "C-1", "scenario_id": "x"}),
    ]
    path = _write_jsonl(tmp_path / "interactions.jsonl", calls)
    with pytest.raises(InvalidInput) as caught:
        _events(container, path, INTERACTION_KINDS)
    assert [(e.index, e.field) for e in caught.value.errors] == [(2, "type")]
    assert "written by omnicrm itself" in caught.value.errors[0].reason
    assert count(events) == 0


def test_an_unknown_file_type_is_refused(container: Container, tmp_path: Path) -> None:
    path = tmp_path / "events.xml"
    path.write_text("<events/>")
    with pytest.raises(InvalidInput):
        _events(container, path)


def test_an_unknown_customer_id_is_reported_with_its_line_number(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    bad = _event(1, customer_id="01NOSUCHCUSTOMER0000000000")
    del bad["identifiers"]
    path = _write_jsonl(tmp_path / "events.jsonl", [_event(0), bad, _event(2)])
    with pytest.raises(InvalidInput) as caught:
        _events(container, path)
    assert count(events) == 0
    assert [e.index for e in caught.value.errors] == [2]


def test_an_unknown_customer_id_late_in_a_big_file_writes_nothing(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    records: list[Any] = [_event(n) for n in range(1001)]
    bad = _event(1001, customer_id="01NOSUCHCUSTOMER0000000000")
    del bad["identifiers"]
    path = _write_jsonl(tmp_path / "events.jsonl", [*records, bad])
    with pytest.raises(InvalidInput):
        _events(container, path)
    assert count(events) == 0


# ------------------------------------------------------------------------------------ customers


def _profile(n: int, **overrides: Any) -> Json:
    profile: Json = {
        "status": "client",
        "identifiers": [
            {"kind": "cbs_id", "value": f"CBS-{n}"},
            {"kind": "phone", "value": f"+38067100{n:04d}"},
        ],
        "first_name": "Iryna",
        "last_name": f"Test{n}",
        "segments": ["imported"],
        "consents": [{"channel": "email", "purpose": "marketing", "granted": True}],
    }
    profile.update(overrides)
    return profile


def test_import_customers_creates_then_updates(
    container: Container,
    tmp_path: Path,
    state_counts: Callable[[], dict[str, int]],
    audit_actions: Callable[[str], int],
) -> None:
    path = _write_jsonl(tmp_path / "customers.jsonl", [_profile(n) for n in range(4)])
    progress: list[int] = []

    report = import_customers(container.uow, path, actor="importer", progress=progress.append)

    assert (report.lines, report.accepted, report.customers_created) == (4, 4, 4)
    assert sum(progress) == 4
    counts = state_counts()
    assert (counts["customers"], counts["identifiers"], counts["consents"], counts["segments"]) == (
        4,
        8,
        4,
        4,
    )
    assert audit_actions("import.customers") == 1

    again = import_customers(container.uow, path, actor="importer")

    assert (again.lines, again.accepted, again.customers_created) == (4, 4, 0)
    assert state_counts()["customers"] == 4
    assert state_counts()["identifiers"] == 8


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ("[1, 2", "(line)"),
        (_profile(50, nickname="Ira"), "nickname"),
        (_profile(51, date_of_birth="31.12.1990"), "date_of_birth"),
        (_profile(52, identifiers=[]), "identifiers"),
        (_profile(53, first_name="4111111111111111"), "first_name"),
    ],
    ids=["not-json", "extra-field", "bad-date", "no-identifier", "card-number"],
)
def test_a_bad_profile_line_refuses_the_file_with_its_line_number(
    container: Container, tmp_path: Path, state_counts: Callable[[], dict[str, int]], bad: Any, field: str
) -> None:
    path = _write_jsonl(tmp_path / "customers.jsonl", [_profile(0), "", _profile(1), bad, _profile(2)])
    before = state_counts()
    with pytest.raises(InvalidInput) as caught:
        import_customers(container.uow, path, actor="importer")
    assert {e.index for e in caught.value.errors} == {4}
    assert field in {e.field for e in caught.value.errors}
    assert state_counts() == before


def test_an_invalid_phone_in_a_profile_file_is_reported_with_its_line_number(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    bad = _profile(9, identifiers=[{"kind": "phone", "value": "12345"}])
    path = _write_jsonl(tmp_path / "customers.jsonl", [_profile(0), "", _profile(1), bad])
    with pytest.raises(InvalidInput) as caught:
        import_customers(container.uow, path, actor="importer")
    assert count(customers) == 0
    assert [e.index for e in caught.value.errors] == [4]


def test_an_invalid_phone_late_in_a_big_profile_file_writes_nothing(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    records: list[Any] = [{"identifiers": [{"kind": "cbs_id", "value": f"B-{n}"}]} for n in range(500)]
    records.append({"identifiers": [{"kind": "phone", "value": "12345"}]})
    path = _write_jsonl(tmp_path / "customers.jsonl", records)
    with pytest.raises(InvalidInput):
        import_customers(container.uow, path, actor="importer")
    assert count(customers) == 0


# ------------------------------------------------------------------------------------ generated data set


def test_the_generated_data_set_imports_cleanly(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    dataset = generate(seed=42, size=DatasetSize(200, 1500, 300), start=datetime(2026, 8, 1, tzinfo=UTC))
    paths = write_dataset(dataset, tmp_path / "data")
    reports: dict[str, ImportReport] = {}
    progress: dict[str, list[int]] = {"customers": [], "events": [], "interactions": []}

    reports["customers"] = import_customers(
        container.uow, paths["customers"], actor="importer", progress=progress["customers"].append
    )
    for name, kinds in (("events", EVENT_KINDS), ("interactions", INTERACTION_KINDS)):
        reports[name] = _events(container, paths[name], kinds, progress=progress[name].append)

    sizes = {"customers": 200, "events": 1500, "interactions": 300}
    for name, size in sizes.items():
        assert reports[name].lines == size, name
        assert reports[name].accepted == size, name
        assert reports[name].duplicates == 0, name
        assert sum(progress[name]) == size, name
    assert len(progress["events"]) == 2  # written in chunks of 1,000
    assert count(events) == len(dataset.events) + len(dataset.interactions) == 1800
    assert count(customers) >= 200
    with container.reader() as conn:
        assert audit.verify(conn)[0] is True


# ------------------------------------------------------------------------------------ profiles in bulk


def _rich(tag: str, n: int, **overrides: Any) -> Json:
    """A profile with every kind of child row; `tag` keeps the identifiers and contracts of two
    copies of the same person apart."""
    profile: Json = {
        "identifiers": [
            {"kind": "cbs_id", "value": f"{tag}-CBS-{n}"},
            {"kind": "phone", "value": f"067 {'ab'.index(tag) + 1}00 {n // 100:02d} {n % 100:02d}"},
            {"kind": "email", "value": f"Person.{tag}{n}@Example.com"},
        ],
        "first_name": "Олена",
        "last_name": f"Rich{n}",
        "date_of_birth": "1990-02-28",
        "value_tier": "premium",
        "preferences": {"preferred_channel": "sms", "contact_window_start": "09:00:00", "language": "en"},
        "constraints": {"vulnerable": True, "channel_blacklist": ["email"]},
        "segments": ["b-seg", "a-seg", "b-seg"],
        "consents": [
            {"channel": "sms", "purpose": "marketing", "granted": True, "source": "branch"},
            {
                "channel": "email",
                "purpose": "service",
                "granted": False,
                "legal_basis": "contract",
                "effective_at": "2026-01-02T03:04:05+02:00",
            },
        ],
        "products": [
            {
                "product_class": "deposit",
                "contract_number": f"{tag}-DEP-{n}",
                "state": "active",
                "opened_at": "2025-05-01",
                "terms": {"currency": "UAH", "rate": 12.5},
            }
        ],
    }
    profile.update(overrides)
    return profile


def _rich_lines(tag: str) -> list[Json]:
    spouse = {"kind": "spouse", "related": {"kind": "cbs_id", "value": f"{tag}-CBS-0"}, "note": "since 2010"}
    return [
        _rich(tag, 0),
        _rich(tag, 1, relationships=[spouse]),
        _rich(tag, 2, products=[], constraints={"do_not_contact": True}, preferences=None),
        {"identifiers": [{"kind": "cbs_id", "value": f"{tag}-min"}], "last_name": "Minimal"},
    ]


_NOT_COMPARED = {
    "id",
    "customer_id",
    "origin_id",
    "created_at",
    "updated_at",
    "recorded_at",
    "state_changed_at",
}


def _client_data(container: Container) -> dict[str, dict[str, Json]]:
    """tag -> last name -> the profile's stored rows, without ids, times of recording and the values
    that tell two copies apart (identifier values, contract numbers)."""
    tables = {
        "identifiers": identifiers,
        "segments": segments,
        "consents": consents,
        "products": products,
        "relationships": relationships,
    }
    with container.reader() as conn:
        people = {r.id: dict(r._mapping) for r in conn.execute(select(customers))}
        tags = {
            r.customer_id: r.value.split("-")[0]
            for r in conn.execute(select(identifiers).where(identifiers.c.kind == "cbs_id"))
        }
        children: dict[str, dict[str, list[Json]]] = {cid: {name: [] for name in tables} for cid in people}
        for name, table in tables.items():
            for r in conn.execute(select(table)):
                row = {
                    k: v
                    for k, v in r._mapping.items()
                    if k not in _NOT_COMPARED | {"value", "contract_number"}
                }
                if "effective_at" in row and row["effective_at"] == r.recorded_at:
                    row["effective_at"] = "when recorded"
                if "related_id" in row:
                    row["related_id"] = people[row["related_id"]]["last_name"]
                children[r.customer_id][name].append(row)
    data: dict[str, dict[str, Json]] = {}
    for cid, person in people.items():
        rows = {name: sorted(found, key=repr) for name, found in children[cid].items()}
        profile = {k: v for k, v in person.items() if k not in _NOT_COMPARED}
        data.setdefault(tags[cid], {})[person["last_name"]] = {"profile": profile, **rows}
    return data


def test_imported_profiles_are_stored_as_the_ordinary_upsert_stores_them(
    container: Container, tmp_path: Path
) -> None:
    """The import writes new people in bulk; what it stores must be what `customers.upsert` stores."""
    report = import_customers(
        container.uow, _write_jsonl(tmp_path / "a.jsonl", _rich_lines("a")), actor="importer"
    )
    with container.uow() as uow:
        for line in _rich_lines("b"):
            upsert(
                uow.conn,
                CustomerIn.model_validate(line),
                actor="importer",
                now=datetime.now(UTC),
                audited=False,
            )
        uow.commit()

    data = _client_data(container)

    assert (report.accepted, report.customers_created) == (4, 4)
    assert sorted(data) == ["a", "b"]
    assert sorted(data["a"]) == ["Minimal", "Rich0", "Rich1", "Rich2"]
    for name, person in data["a"].items():
        for part, rows in person.items():
            assert rows == data["b"][name][part], (name, part)
    assert data["a"]["Rich1"]["relationships"][0]["related_id"] == "Rich0"  # a person earlier in the chunk
    assert data["a"]["Rich0"]["profile"]["status"] == "client"  # an active product makes a client


def test_lines_sharing_an_identifier_in_one_chunk_make_one_profile(
    container: Container, tmp_path: Path, state_counts: Callable[[], dict[str, int]]
) -> None:
    lines = [
        {"identifiers": [{"kind": "cbs_id", "value": "SH-1"}], "first_name": "Iryna", "segments": ["one"]},
        {"identifiers": [{"kind": "cbs_id", "value": "SOLO"}]},
        {
            "identifiers": [{"kind": "phone", "value": "+380671112233"}, {"kind": "cbs_id", "value": "SH-1"}],
            "last_name": "Second",
            "segments": ["two"],
        },
    ]
    report = import_customers(container.uow, _write_jsonl(tmp_path / "c.jsonl", lines), actor="importer")

    assert (report.lines, report.accepted, report.customers_created) == (3, 3, 2)
    counts = state_counts()
    assert (counts["customers"], counts["identifiers"], counts["segments"]) == (2, 3, 2)
    with container.reader() as conn:
        owner = conn.execute(
            select(identifiers.c.customer_id).where(identifiers.c.value == "SH-1")
        ).scalar_one()
        person = conn.execute(select(customers).where(customers.c.id == owner)).one()
        phone = conn.execute(
            select(identifiers.c.customer_id).where(identifiers.c.kind == "phone")
        ).scalar_one()
    assert (person.first_name, person.last_name, person.version) == ("Iryna", "Second", 2)
    assert phone == owner


def test_a_line_matching_existing_profiles_updates_and_merges_them(
    container: Container, tmp_path: Path, state_counts: Callable[[], dict[str, int]]
) -> None:
    first = [
        {"identifiers": [{"kind": "cbs_id", "value": "EX-1"}], "first_name": "Old", "segments": ["kept"]},
        {"identifiers": [{"kind": "crm_id", "value": "EX-2"}], "status": "client"},
    ]
    import_customers(container.uow, _write_jsonl(tmp_path / "first.jsonl", first), actor="importer")
    second = [
        {"identifiers": [{"kind": "cbs_id", "value": "NEW-1"}]},
        {
            "identifiers": [{"kind": "cbs_id", "value": "EX-1"}, {"kind": "crm_id", "value": "EX-2"}],
            "first_name": "New",
            "segments": ["added"],
            "consents": [{"channel": "sms", "purpose": "marketing", "granted": True}],
        },
    ]
    report = import_customers(
        container.uow, _write_jsonl(tmp_path / "second.jsonl", second), actor="importer"
    )

    assert (report.accepted, report.customers_created) == (2, 1)
    counts = state_counts()
    assert (counts["customers"], counts["merges"], counts["consents"]) == (3, 1, 1)
    with container.reader() as conn:
        live = conn.execute(select(customers).where(customers.c.merged_into.is_(None))).all()
        owners = set(
            conn.execute(
                select(identifiers.c.customer_id).where(identifiers.c.value.in_(["EX-1", "EX-2"]))
            ).scalars()
        )
        kept = set(
            conn.execute(select(segments.c.segment).where(segments.c.customer_id.in_(owners))).scalars()
        )
    survivor = next(p for p in live if p.id in owners)
    assert (len(live), len(owners)) == (2, 1)
    assert (survivor.first_name, survivor.status) == ("New", "client")
    assert kept == {"kept", "added"}


def test_a_contract_of_another_person_refuses_the_file_with_its_line_number(
    container: Container, tmp_path: Path, state_counts: Callable[[], dict[str, int]]
) -> None:
    holder = _rich("a", 0)
    import_customers(container.uow, _write_jsonl(tmp_path / "holder.jsonl", [holder]), actor="importer")
    before = state_counts()
    taken = {"identifiers": [{"kind": "cbs_id", "value": "OTHER"}], "products": holder["products"]}
    lines: list[Any] = [_rich("b", 1), "", taken, _rich("b", 2)]

    with pytest.raises(InvalidInput) as caught:
        import_customers(container.uow, _write_jsonl(tmp_path / "c.jsonl", lines), actor="importer")

    assert caught.value.detail.startswith("line 3: ")
    assert "nothing was imported" in caught.value.detail
    assert [e.index for e in caught.value.errors] == [3]
    assert state_counts() == before


def test_an_unknown_related_person_refuses_the_file_with_its_line_number(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    related = {"kind": "household", "related": {"kind": "cbs_id", "value": "NOBODY"}}
    lines = [_rich("a", 0), _rich("a", 1, relationships=[related])]
    with pytest.raises(InvalidInput) as caught:
        import_customers(container.uow, _write_jsonl(tmp_path / "c.jsonl", lines), actor="importer")
    assert [(e.index, e.field) for e in caught.value.errors] == [(2, "relationships[0].related")]
    assert count(customers) == 0


def test_invalid_lines_are_reported_before_a_refusal_found_in_writing(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    """Every line is validated, as if all were validated before writing: a bad line in a later chunk
    is what the file is refused for, not a refusal met while writing an earlier chunk."""
    related = {"kind": "household", "related": {"kind": "cbs_id", "value": "NOBODY"}}
    lines: list[Any] = [{"identifiers": [{"kind": "cbs_id", "value": f"R-{n}"}]} for n in range(1500)]
    lines[2] = {"identifiers": [{"kind": "cbs_id", "value": "R-2"}], "relationships": [related]}
    lines[1400] = {"identifiers": [{"kind": "phone", "value": "12345"}]}
    with pytest.raises(InvalidInput) as caught:
        import_customers(container.uow, _write_jsonl(tmp_path / "c.jsonl", lines), actor="importer")
    assert [e.index for e in caught.value.errors] == [1401]
    assert "1 of 1500 lines are invalid" in caught.value.detail
    assert count(customers) == 0


def test_a_card_number_anywhere_in_a_profile_line_is_refused(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    bad = _rich("a", 1)
    bad["products"][0]["terms"] = {"linked_card": "4111 1111 1111 1111"}
    with pytest.raises(InvalidInput) as caught:
        import_customers(
            container.uow, _write_jsonl(tmp_path / "c.jsonl", [_rich("a", 0), bad]), actor="importer"
        )
    assert [(e.index, e.field) for e in caught.value.errors] == [(2, "products[0].terms.linked_card")]
    assert count(customers) == 0


def test_a_contract_written_earlier_in_the_chunk_is_an_identifier_of_its_holder(
    container: Container, tmp_path: Path, count: Callable[[Table], int]
) -> None:
    """A product's contract number becomes a `contract` identifier of its holder, as if each line
    were written alone: a later line naming it updates that profile, whether the holder was new in
    this chunk or an existing profile the chunk updated."""
    existing = {"identifiers": [{"kind": "cbs_id", "value": "OLD"}]}
    import_customers(container.uow, _write_jsonl(tmp_path / "old.jsonl", [existing]), actor="importer")
    deposit = {"product_class": "deposit", "state": "active"}
    lines = [
        {
            "identifiers": [{"kind": "cbs_id", "value": "NEW"}],
            "products": [{**deposit, "contract_number": "D-1"}],
        },
        {
            "identifiers": [{"kind": "cbs_id", "value": "OLD"}],
            "products": [{**deposit, "contract_number": "D-2"}],
        },
        {"identifiers": [{"kind": "contract", "value": "D-1"}], "first_name": "Nova"},
        {"identifiers": [{"kind": "contract", "value": "D-2"}], "first_name": "Stara"},
    ]
    report = import_customers(container.uow, _write_jsonl(tmp_path / "c.jsonl", lines), actor="importer")

    assert (report.accepted, report.customers_created) == (4, 1)
    assert count(customers) == 2
    with container.reader() as conn:
        names = dict(
            conn.execute(
                select(identifiers.c.value, customers.c.first_name)
                .join(customers, customers.c.id == identifiers.c.customer_id)
                .where(identifiers.c.kind == "cbs_id")
            ).all()
        )
    assert names == {"NEW": "Nova", "OLD": "Stara"}
