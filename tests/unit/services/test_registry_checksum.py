"""A published version's checksum covers what the file says, not defaults the model fills in."""

from __future__ import annotations

import yaml

from omnicrm.domain.scenarios import ScenarioSpec
from omnicrm.services.conversations.registry import spec_checksum
from omnicrm.settings import SHIPPED_SCENARIOS

TEMPLATE = SHIPPED_SCENARIOS / "templates" / "loan-application-reminder.yaml"


class _LaterModel(ScenarioSpec):
    """The template model as a later release might have it: one more field, with a default."""

    quiet_weekends: bool = False


def _spec(**changes: object) -> ScenarioSpec:
    return ScenarioSpec.model_validate({**yaml.safe_load(TEMPLATE.read_text()), **changes})


def test_a_field_added_later_with_a_default_leaves_the_checksum_alone() -> None:
    spec = _spec()
    later = _LaterModel.model_validate(spec.model_dump())
    assert spec_checksum(later) == spec_checksum(spec)


def test_a_changed_value_changes_the_checksum() -> None:
    spec = _spec()
    assert spec_checksum(_spec(priority=spec.priority + 1)) != spec_checksum(spec)
    later = _LaterModel.model_validate({**spec.model_dump(), "quiet_weekends": True})
    assert spec_checksum(later) != spec_checksum(spec)


def test_spelling_out_a_default_is_the_same_content() -> None:
    spec = _spec()
    explicit = _spec(cooling_off_days=spec.cooling_off_days, migrate_from=spec.migrate_from)
    assert spec_checksum(explicit) == spec_checksum(spec)
