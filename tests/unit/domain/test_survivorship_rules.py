"""Merge survivorship: who survives, and which values the survivor takes in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicrm.domain.survivorship import (
    FILLABLE_FIELDS,
    PROTECTIVE_FLAGS,
    MergeCandidate,
    choose_survivor,
    merged_profile,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def cand(cid: str, status: str = "prospect", days: int = 0) -> MergeCandidate:
    return MergeCandidate(cid, status, T0 + timedelta(days=days))


@pytest.mark.parametrize(
    ("a", "b", "survivor_id"),
    [
        (cand("A", "client", days=10), cand("B", "prospect", days=0), "A"),  # client beats older prospect
        (cand("A", "prospect", days=0), cand("B", "client", days=10), "B"),
        (cand("A", "client", days=5), cand("B", "client", days=1), "B"),  # older wins among clients
        (cand("A", "prospect", days=1), cand("B", "prospect", days=5), "A"),
        (cand("B", "prospect", days=3), cand("A", "prospect", days=3), "A"),  # id tie-break
        (cand("01J2", "client", days=3), cand("01J1", "client", days=3), "01J1"),
    ],
)
def test_choose_survivor(a: MergeCandidate, b: MergeCandidate, survivor_id: str) -> None:
    survivor, merged = choose_survivor(a, b)
    assert survivor.id == survivor_id
    assert {survivor.id, merged.id} == {a.id, b.id}


def test_choose_survivor_compares_instants_across_time_zones() -> None:
    older = MergeCandidate("Z", "prospect", datetime(2025, 1, 1, 12, 0, tzinfo=UTC))
    newer_local = MergeCandidate("A", "prospect", datetime(2025, 1, 1, 13, 30, tzinfo=UTC).astimezone())
    assert choose_survivor(newer_local, older)[0].id == "Z"


_CANDIDATES = st.builds(
    MergeCandidate,
    id=st.text(alphabet="ABC0123", min_size=1, max_size=3),
    status=st.sampled_from(["client", "prospect"]),
    created_at=st.sampled_from([T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]),
)


@settings(max_examples=150, deadline=None)
@given(a=_CANDIDATES, b=_CANDIDATES)
def test_choose_survivor_is_symmetric(a: MergeCandidate, b: MergeCandidate) -> None:
    survivor_ab, merged_ab = choose_survivor(a, b)
    survivor_ba, merged_ba = choose_survivor(b, a)
    assert survivor_ab == survivor_ba
    assert merged_ab == merged_ba
    if a.status != b.status:
        assert survivor_ab.status == "client"


def test_empty_fields_are_filled_and_set_fields_kept() -> None:
    survivor = {"first_name": "Olena", "last_name": "", "middle_name": None, "branch": "kyiv-01"}
    merged = {
        "first_name": "Olha",
        "last_name": "Shevchenko",
        "middle_name": "Petrivna",
        "branch": "lviv-02",
        "date_of_birth": date(1990, 5, 1),
        "timezone": "",
    }
    assert merged_profile(survivor, merged) == {
        "last_name": "Shevchenko",
        "middle_name": "Petrivna",
        "date_of_birth": date(1990, 5, 1),
    }


def test_every_fillable_field_is_filled() -> None:
    merged = {f: f"value-{f}" for f in FILLABLE_FIELDS}
    assert merged_profile({}, merged) == merged


@pytest.mark.parametrize("flag", PROTECTIVE_FLAGS)
@pytest.mark.parametrize(
    ("survivor_has", "merged_has", "change"),
    [(False, True, True), (True, False, None), (True, True, None), (False, False, None), (None, True, True)],
)
def test_protective_flags_are_or_ed(
    flag: str, survivor_has: bool | None, merged_has: bool, change: bool | None
) -> None:
    changes = merged_profile({flag: survivor_has}, {flag: merged_has})
    assert changes.get(flag) == change


@pytest.mark.parametrize(
    ("survivor_list", "merged_list", "expected"),
    [
        (["sms"], ["email"], ["email", "sms"]),
        ([], ["sms", "email"], ["email", "sms"]),
        (None, ["sms"], ["sms"]),
        (["sms", "email"], ["email"], None),  # nothing new: no change
        (["sms"], [], None),
        (["sms"], None, None),
    ],
)
def test_blacklists_are_united(
    survivor_list: list[str] | None, merged_list: list[str] | None, expected: list[str] | None
) -> None:
    changes = merged_profile({"channel_blacklist": survivor_list}, {"channel_blacklist": merged_list})
    assert changes.get("channel_blacklist") == expected


@pytest.mark.parametrize(
    ("survivor_tier", "merged_tier", "expected"),
    [
        ("mass", "premium", "premium"),
        ("premium", "mass", None),
        ("affluent", "private", "private"),
        ("private", "private", None),
        (None, "affluent", "affluent"),
        ("mass", None, None),
        (None, None, None),
    ],
)
def test_higher_value_tier_is_kept(
    survivor_tier: str | None, merged_tier: str | None, expected: str | None
) -> None:
    changes = merged_profile({"value_tier": survivor_tier}, {"value_tier": merged_tier})
    assert changes.get("value_tier") == expected


@pytest.mark.parametrize(
    ("survivor_count", "merged_count", "expected"),
    [(1, 2, 3), (0, 2, 2), (None, 1, 1), (3, 0, None), (3, None, None)],
)
def test_open_complaints_are_summed(
    survivor_count: int | None, merged_count: int | None, expected: int | None
) -> None:
    changes = merged_profile({"open_complaints": survivor_count}, {"open_complaints": merged_count})
    assert changes.get("open_complaints") == expected


@pytest.mark.parametrize(
    ("survivor_status", "merged_status", "expected"),
    [("prospect", "client", "client"), ("client", "prospect", None), ("client", "client", None)],
)
def test_client_status_is_never_lost(survivor_status: str, merged_status: str, expected: str | None) -> None:
    changes = merged_profile({"status": survivor_status}, {"status": merged_status})
    assert changes.get("status") == expected


def test_only_changed_fields_are_returned() -> None:
    profile: dict[str, Any] = {
        "status": "client",
        "first_name": "Olena",
        "last_name": "Shevchenko",
        "do_not_contact": True,
        "vulnerable": False,
        "fraud_case_open": False,
        "channel_blacklist": ["sms"],
        "value_tier": "premium",
        "open_complaints": 1,
    }
    weaker = {**profile, "do_not_contact": False, "value_tier": "mass", "open_complaints": 0}
    assert merged_profile(profile, weaker) == {}
    assert merged_profile(profile, {}) == {}


def test_full_merge() -> None:
    survivor = {
        "status": "client",
        "first_name": "Olena",
        "language": None,
        "do_not_contact": False,
        "vulnerable": False,
        "channel_blacklist": ["sms"],
        "value_tier": "affluent",
        "open_complaints": 1,
    }
    merged = {
        "status": "prospect",
        "first_name": "Olenka",
        "language": "uk",
        "do_not_contact": True,
        "vulnerable": False,
        "channel_blacklist": ["webpush"],
        "value_tier": "premium",
        "open_complaints": 2,
    }
    assert merged_profile(survivor, merged) == {
        "language": "uk",
        "do_not_contact": True,
        "channel_blacklist": ["sms", "webpush"],
        "value_tier": "premium",
        "open_complaints": 3,
    }
