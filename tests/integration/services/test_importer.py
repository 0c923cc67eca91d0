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
from omnicrm.services import import_files
from omnicrm.services.importer import ImportReport, import_customers, import_events
from omnicrm.services.ingest import EVENT_KINDS, INTERACTION_KINDS
from omnicrm.sim.generate import DatasetSize, generate, write_dataset
from omnicrm.store import audit
from omnicrm.store.tables import customers, events, identifiers

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
