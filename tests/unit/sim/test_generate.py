"""The synthetic data set: deterministic, exact in size, valid against every contract, coherent."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from omnicrm.domain.catalogue import Catalogue, compile_catalogue
from omnicrm.domain.identifiers import iban_valid, normalise
from omnicrm.domain.pan import contains_pan
from omnicrm.services.contracts import CustomerIn, EventIn
from omnicrm.settings import SHIPPED_CATALOGUE
from omnicrm.sim.generate import Dataset, DatasetSize, generate, write_dataset

START = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
SIZE = DatasetSize(customers=300, events=2_000, interactions=500)
OPERATOR_CODES = {"50", "63", "66", "67", "68", "73", "93", "95", "96", "97", "98", "99"}
PRODUCT_CLASS_OF = {
    "deposit.maturing": "deposit",
    "card.issued": "card",
    "card.activated": "card",
    "loan.approved": "consumer_loan",
    "loan.disbursed": "consumer_loan",
    "payment.overdue": "consumer_loan",
    "salary_project.enrolled": "salary_project",
}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return generate(seed=7, size=SIZE, start=START)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return compile_catalogue(yaml.safe_load((SHIPPED_CATALOGUE).read_text()))


@pytest.fixture(scope="module")
def owners(data: Dataset) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, normalised value) -> the customer record holding that identifier."""
    return {
        (i["kind"], normalise(i["kind"], i["value"])): c for c in data.customers for i in c["identifiers"]
    }


def _contracts(customer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["contract_number"]: p for p in customer.get("products", [])}


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    first = write_dataset(generate(seed=3, size=SIZE, start=START), tmp_path / "a")
    second = write_dataset(generate(seed=3, size=SIZE, start=START), tmp_path / "b")
    other = write_dataset(generate(seed=4, size=SIZE, start=START), tmp_path / "c")
    assert set(first) == {"customers", "events", "interactions"}
    for name, path in first.items():
        assert path.name == f"{name}.jsonl"
        assert path.read_bytes() == second[name].read_bytes()
        assert path.read_bytes() != other[name].read_bytes()


def test_sizes_are_exact(data: Dataset) -> None:
    assert (len(data.customers), len(data.events), len(data.interactions)) == (300, 2_000, 500)
    assert len({e["event_id"] for e in data.events + data.interactions}) == 2_500


def test_customers_validate_and_mix_clients_with_prospects(data: Dataset) -> None:
    for customer in data.customers:
        CustomerIn.model_validate(customer)
    status = Counter(c["status"] for c in data.customers)
    assert 0.5 < status["client"] / len(data.customers) < 0.7
    assert all(not c.get("products") for c in data.customers if c["status"] == "prospect")
    assert all(c["products"] for c in data.customers if c["status"] == "client")


def test_events_and_interactions_validate_against_the_catalogue(data: Dataset, catalogue: Catalogue) -> None:
    for is_interaction, records in ((False, data.events), (True, data.interactions)):
        for record in records:
            EventIn.model_validate(record)
            event_type = catalogue.get(record["type"])
            assert event_type is not None, record["type"]
            assert isinstance(event_type.clean(record["attributes"]), dict), record
            assert (event_type.kind == "interaction") == is_interaction
            assert record["event_id"].startswith("ix-" if is_interaction else "ev-")


def test_identifiers_normalise_and_are_unique_across_customers(data: Dataset) -> None:
    seen: set[tuple[str, str]] = set()
    for customer in data.customers:
        for identifier in customer["identifiers"]:
            key = (identifier["kind"], normalise(identifier["kind"], identifier["value"]))
            assert key not in seen, key
            seen.add(key)
            if key[0] == "account":
                assert len(key[1]) == 29
                assert iban_valid(key[1])
            if key[0] == "phone":
                assert key[1][:4] == "+380"
                assert key[1][4:6] in OPERATOR_CODES
    kinds = {kind for kind, _ in seen}
    assert kinds == {
        "phone",
        "email",
        "cbs_id",
        "crm_id",
        "account",
        "device_id",
        "cookie_id",
        "messenger_id",
    }


def test_contract_numbers_are_unique(data: Dataset) -> None:
    numbers = [p["contract_number"] for c in data.customers for p in c.get("products", [])]
    assert len(numbers) == len(set(numbers))


def test_relationships_point_to_an_earlier_customer(data: Dataset) -> None:
    earlier: set[str] = set()
    linked = 0
    for customer in data.customers:
        for relation in customer.get("relationships", []):
            assert relation["related"]["kind"] == "phone"
            assert normalise("phone", relation["related"]["value"]) in earlier
            linked += 1
        phones = [i["value"] for i in customer["identifiers"] if i["kind"] == "phone"]
        earlier.update(normalise("phone", phone) for phone in phones)
    assert linked > 0


def test_no_line_holds_a_card_number(data: Dataset, tmp_path: Path) -> None:
    for path in write_dataset(data, tmp_path).values():
        for line in path.read_text(encoding="utf-8").splitlines():
            assert not contains_pan(line), line


def test_events_identify_known_customers_through_their_touchpoint(
    data: Dataset, owners: dict[tuple[str, str], dict[str, Any]]
) -> None:
    expected = {"web": "cookie_id", "mobile_app": "device_id", "core_banking": "cbs_id", "branch": "cbs_id"}
    for event in data.events:
        kind = expected[event["source"]]
        assert (kind, event["identifiers"][kind]) in owners, event
        assert set(event["identifiers"]) <= {kind, "phone"}
    for interaction in data.interactions:
        ((kind, value),) = interaction["identifiers"].items()
        assert (kind, normalise(kind, value)) in owners


def test_funnels_are_coherent(data: Dataset) -> None:
    started: dict[str, str] = {}
    for event in data.events:
        if event["type"] == "application.started":
            started[event["attributes"]["application_id"]] = event["occurred_at"]
    ends: Counter[str] = Counter()
    for event in data.events:
        if event["type"].startswith("application.") and event["type"] != "application.started":
            app = event["attributes"]["application_id"]
            assert app in started
            assert started[app] <= event["occurred_at"]
            if event["type"] != "application.step_completed":
                ends[app] += 1
    assert max(ends.values()) == 1
    kinds = Counter(e["type"] for e in data.events)
    assert kinds["application.started"] > kinds["application.completed"]
    assert kinds["application.step_completed"] > kinds["application.abandoned"]
    assert kinds["application.abandoned"] > kinds["application.completed"]


def test_operational_events_refer_to_the_customers_own_products(
    data: Dataset, owners: dict[tuple[str, str], dict[str, Any]]
) -> None:
    checked = 0
    for event in data.events:
        if event["source"] != "core_banking" and event["type"] != "card.activation.step":
            continue
        kind, value = next(iter(event["identifiers"].items()))
        product = _contracts(owners[(kind, value)]).get(event["attributes"]["contract_number"])
        assert product is not None, event
        wanted = PRODUCT_CLASS_OF.get(event["type"], event["attributes"].get("product_class", "card"))
        assert product["product_class"] == wanted, event
        if event["type"] == "deposit.maturing":
            assert event["attributes"]["maturity_date"] == product["maturity_date"]
        checked += 1
    assert checked > 100


def test_some_events_arrive_late(data: Dataset) -> None:
    latest, late = "", 0
    for event in data.events:
        late += event["occurred_at"] < latest
        latest = max(latest, event["occurred_at"])
    assert 0 < late < 0.1 * len(data.events)
    end = START + dt.timedelta(days=90)
    assert all(START <= dt.datetime.fromisoformat(e["occurred_at"]) < end for e in data.events)


def test_complaints_are_resolved_after_they_are_registered(data: Dataset) -> None:
    registered = {
        i["attributes"]["complaint_id"]: i["occurred_at"]
        for i in data.interactions
        if i["type"] == "crm.complaint.registered"
    }
    resolved = [i for i in data.interactions if i["type"] == "crm.complaint.resolved"]
    assert registered
    assert 0 < len(resolved) < len(registered)
    for item in resolved:
        assert registered[item["attributes"]["complaint_id"]] < item["occurred_at"]


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate(size=SIZE, start=dt.datetime(2026, 9, 1))
