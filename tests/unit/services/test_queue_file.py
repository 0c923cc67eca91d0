"""scenarios/queues.yaml: the shipped file loads and covers every queue a scenario names; a broken
file is refused with its file, line and reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest

from omnicrm.api.tasks import DispositionName
from omnicrm.domain.callcentre import DISPOSITIONS
from omnicrm.domain.router import HANDOVER_QUEUE
from omnicrm.services.callcentre.queues import QueueFile, load_queues
from omnicrm.services.conversations.datafiles import DataFileError, load_catalogue, read_library
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS

SHIPPED = SHIPPED_SCENARIOS / "queues.yaml"
GOOD = """version: 1
operator_capacity: 2
sla_minutes: {1: 60, 2: 240}
default_priority: {service: 1, commercial: 2}
fallback: general
queues:
  general: {skill: general}
  cards: {skill: cards, due_minutes: 30}
"""


def refusal(tmp_path: Path, text: str) -> DataFileError:
    path = tmp_path / "queues.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError) as info:
        load_queues(path)
    assert info.value.errors
    for error in info.value.errors:
        assert error.file == str(path)
    return info.value


def test_shipped_queues_cover_every_queue_a_scenario_names() -> None:
    book = load_queues(SHIPPED)
    library = read_library(SHIPPED_SCENARIOS, load_catalogue(SHIPPED_CATALOGUE)).library
    named = {
        step.queue for scenario in library.current.values() for step in scenario.steps.values() if step.queue
    }
    assert named
    assert named | {HANDOVER_QUEUE} <= set(book.queues)


def test_plan_takes_priority_due_time_and_sla_from_the_data(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(GOOD, encoding="utf-8")
    book = load_queues(path)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    plan = book.plan("cards", "commercial", now)
    assert (plan.priority, plan.skill) == (2, "cards")
    assert (plan.due_at - now, plan.sla_at - now) == (timedelta(minutes=30), timedelta(minutes=240))
    unknown = book.plan("no-such-queue", "service", now)  # a later scenario's queue: the fallback's settings
    assert (unknown.priority, unknown.skill, unknown.due_at, unknown.sla_at) == (
        1,
        "general",
        now,
        now + timedelta(hours=1),
    )


@pytest.mark.parametrize(
    ("text", "line", "field", "reason"),
    [
        (
            GOOD.replace("skill: cards, due_minutes: 30", "skill: cards, due_minutes: -5"),
            8,
            "queues.cards.due_minutes",
            "greater than or equal",
        ),
        (GOOD.replace("operator_capacity: 2", "operator_capacity: many"), 2, "operator_capacity", "integer"),
        (
            GOOD.replace("  cards: {skill: cards", "  cards: {colour: red, skill: cards"),
            8,
            "queues.cards.colour",
            "Extra inputs",
        ),
        (GOOD.replace("fallback: general", "fallback: nowhere"), None, "", "fallback queue 'nowhere'"),
        (GOOD.replace("commercial: 2}", "commercial: 3}"), None, "", "no sla_minutes"),
        (GOOD.replace("  general:", "  General Queue:"), 7, "queues.General Queue.[key]", "pattern"),
    ],
)
def test_broken_file_is_refused_with_its_line(
    tmp_path: Path, text: str, line: int | None, field: str, reason: str
) -> None:
    [error] = refusal(tmp_path, text).errors
    assert reason in error.reason
    assert error.field == field
    if line is not None:
        assert error.line == line
        assert str(error).startswith(f"{tmp_path / 'queues.yaml'}:{line}: ")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    [error] = refusal(tmp_path, GOOD.replace("  cards: {skill: cards", "  cards: [skill: cards")).errors
    assert error.line == 8
    assert "YAML syntax" in error.reason


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(GOOD, encoding="utf-8")
    current = QueueFile(tmp_path)
    assert current.current().operator_capacity == 2
    path.write_text(GOOD.replace("operator_capacity: 2", "operator_capacity: 5"), encoding="utf-8")
    assert current.current().operator_capacity == 5
    path.write_text(GOOD.replace("operator_capacity: 2", "operator_capacity: 0"), encoding="utf-8")
    with pytest.raises(DataFileError):
        current.current()


def test_every_disposition_is_a_reaction_the_catalogue_accepts() -> None:
    catalogue = load_catalogue(SHIPPED_CATALOGUE)
    reaction = catalogue.get("message.reaction")
    assert reaction is not None
    for disposition, meaning in DISPOSITIONS.items():
        cleaned = reaction.clean({"message_id": "k", "reaction": meaning.reaction}, 0)
        assert not isinstance(cleaned, list), disposition
    assert DISPOSITIONS["do_not_call"].reaction == "unsubscribed"


def test_the_api_offers_exactly_the_dispositions_of_the_dictionary() -> None:
    assert set(get_args(DispositionName)) == set(DISPOSITIONS)
