"""The forked process that validates a big event file while the importer writes (`import_files`)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Table

from omnicrm.bootstrap import Container
from omnicrm.domain.errors import InvalidInput
from omnicrm.services.intake import import_files, importer, ingest
from omnicrm.services.intake.ingest import EVENT_KINDS
from omnicrm.store.tables import events


def _event(n: int, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"rd-{n}",
        "type": "product.opened" if n % 2 else "tariff_page.visited",
        "occurred_at": f"2026-10-01T10:{n % 60:02d}:00+02:00",
        "source": "core_banking" if n % 2 else "web",
        "identifiers": {"cookie_id": f"ck-{n % 7}"},
        "attributes": (
            {"product_class": "deposit", "contract_number": f"DEP-{n}", "maturity_date": "2027-11-20"}
            if n % 2
            else {"product_class": "deposit", "page": f"/deposits/{n}"}
        ),
    }
    event.update(overrides)
    return event


def _file(path: Path, count: int, bad: dict[int, Any] | None = None) -> Path:
    bad = bad or {}
    lines = [bad.get(n, orjson.dumps(_event(n)).decode()) for n in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _import(container: Container, path: Path) -> importer.ImportReport:
    return importer.import_events(
        container.uow, path, container.catalogue, EVENT_KINDS, actor="importer", parallel=True
    )


@pytest.fixture(autouse=True)
def no_reader_left() -> Iterator[None]:
    yield
    assert multiprocessing.active_children() == []


def test_forked_and_in_process_validation_give_the_same_chunks(container: Container, tmp_path: Path) -> None:
    path = _file(
        tmp_path / "events.jsonl", 2500, bad={4: "{nope", 2399: orjson.dumps(_event(2399, type="x")).decode()}
    )
    seen: dict[bool, list[import_files.ValidatedChunk]] = {}
    for parallel in (False, True):
        with import_files.validated_chunks(
            path, container.catalogue, EVENT_KINDS, parallel=parallel
        ) as chunks:
            seen[parallel] = list(chunks)

    assert [c.records for c in seen[True]] == [1000, 1000, 500]
    assert [e.index for c in seen[True] for e in c.errors] == [5, 2400]
    lines = [line for c in seen[True] for line, _ in c.items]
    assert lines == sorted(lines)
    assert len(lines) == 2498
    assert any(
        p.effect is not None for c in seen[True] for _, p in c.items
    )  # product.opened keeps its effect
    assert seen[True] == seen[False]


def test_a_reader_that_dies_stops_the_import_and_writes_nothing(
    container: Container, tmp_path: Path, count: Callable[[Table], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    validate = import_files._validate

    def dies_after_one_chunk(*args: Any) -> Iterator[import_files.ValidatedChunk]:
        yield next(validate(*args))
        os._exit(3)

    monkeypatch.setattr(import_files, "_validate", dies_after_one_chunk)  # the forked reader inherits it
    with pytest.raises(RuntimeError, match="exit code 3"):
        _import(container, _file(tmp_path / "events.jsonl", 2500))
    assert count(events) == 0


def test_a_writer_failure_stops_the_reader_and_writes_nothing(
    container: Container, tmp_path: Path, count: Callable[[Table], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_ingest = ingest.ingest
    calls: list[int] = []

    def fails_on_the_second_chunk(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_ingest(*args, **kwargs)

    monkeypatch.setattr(ingest, "ingest", fails_on_the_second_chunk)
    with pytest.raises(OSError, match="disk full"):
        _import(container, _file(tmp_path / "events.jsonl", 20_000))  # more than the pipe holds
    assert count(events) == 0


@pytest.mark.parametrize("parallel", [False, True])
def test_a_file_that_is_not_utf8_is_refused_whole(
    container: Container, tmp_path: Path, count: Callable[[Table], int], parallel: bool
) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(b"event_id,type\nev-1,tariff_page.visited\nev-2,\xff\xfe\n")
    with pytest.raises(InvalidInput, match=r"cannot read events\.csv") as caught:
        importer.import_events(
            container.uow, path, container.catalogue, EVENT_KINDS, actor="importer", parallel=parallel
        )
    assert [e.field for e in caught.value.errors] == ["file"]
    assert count(events) == 0


def test_profile_files_are_validated_alike_forked_and_in_process(tmp_path: Path) -> None:
    profiles: list[str] = []
    for n in range(2100):
        profile: dict[str, Any] = {
            "identifiers": [{"kind": "phone", "value": f"067 300 {n // 100:02d} {n % 100:02d}"}]
        }
        if n % 3 == 0:
            profile["consents"] = [{"channel": "sms", "purpose": "marketing", "granted": True}]
            profile["products"] = [{"product_class": "card", "contract_number": f"C-{n}", "state": "issued"}]
        profiles.append(orjson.dumps(profile).decode())
    profiles[6] = '{"identifiers": []}'
    profiles[1500] = '{"identifiers": [{"kind": "email", "value": "not an address"}]}'
    path = tmp_path / "customers.jsonl"
    path.write_text("\n".join(profiles) + "\n", encoding="utf-8")
    seen: dict[bool, list[import_files.ValidatedChunk[Any]]] = {}
    for parallel in (False, True):
        with import_files.validated_profiles(path, parallel=parallel) as chunks:
            seen[parallel] = list(chunks)

    assert [c.records for c in seen[True]] == [1000, 1000, 100]
    assert [(e.index, e.field) for c in seen[True] for e in c.errors] == [
        (7, "identifiers"),
        (1501, "identifiers[0].value"),
    ]
    first = seen[True][0].items[0][1]
    assert first.pairs == [("phone", "+380673000000")]
    assert first.values == {"status": "client"}  # an issued card makes a client
    assert seen[True] == seen[False]
