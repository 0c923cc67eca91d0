"""Which profile survives a merge and which field values it keeps.

Rules (documented in the README):
1. a client survives over a prospect; otherwise the older profile; otherwise the smaller id;
2. every field the survivor has empty is filled from the merged profile (names, birth date...);
3. protective flags are OR-ed (do-not-contact, vulnerable, open fraud case) and channel blacklists
   united: a merge never makes a person more contactable;
4. the higher value tier is kept; segments are united.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from omnicrm.domain.vocabulary import VALUE_TIERS

FILLABLE_FIELDS = (
    "first_name",
    "last_name",
    "middle_name",
    "date_of_birth",
    "language",
    "timezone",
    "branch",
    "relationship_manager",
    "preferred_channel",
    "contact_window_start",
    "contact_window_end",
)
PROTECTIVE_FLAGS = ("do_not_contact", "vulnerable", "fraud_case_open")


@dataclass(frozen=True, slots=True)
class MergeCandidate:
    id: str
    status: str
    created_at: datetime


def choose_survivor(a: MergeCandidate, b: MergeCandidate) -> tuple[MergeCandidate, MergeCandidate]:
    """Return (survivor, merged) for two profiles of one person."""

    def rank(c: MergeCandidate) -> tuple[int, datetime, str]:
        return (0 if c.status == "client" else 1, c.created_at, c.id)

    return (a, b) if rank(a) <= rank(b) else (b, a)


def merged_profile(survivor: dict[str, Any], merged: dict[str, Any]) -> dict[str, Any]:
    """The survivor's field values after taking in `merged`; only changed fields are returned."""
    changes: dict[str, Any] = {}
    for field in FILLABLE_FIELDS:
        if survivor.get(field) in (None, "") and merged.get(field) not in (None, ""):
            changes[field] = merged[field]
    for flag in PROTECTIVE_FLAGS:
        if merged.get(flag) and not survivor.get(flag):
            changes[flag] = True
    blacklist = sorted(
        set(survivor.get("channel_blacklist") or []) | set(merged.get("channel_blacklist") or [])
    )
    if blacklist != sorted(survivor.get("channel_blacklist") or []):
        changes["channel_blacklist"] = blacklist
    if merged.get("status") == "client" and survivor.get("status") != "client":
        changes["status"] = "client"
    tiers = [t for t in (survivor.get("value_tier"), merged.get("value_tier")) if t in VALUE_TIERS]
    if tiers:
        best = max(tiers, key=VALUE_TIERS.index)
        if best != survivor.get("value_tier"):
            changes["value_tier"] = best
    if merged.get("open_complaints"):
        changes["open_complaints"] = (survivor.get("open_complaints") or 0) + merged["open_complaints"]
    return changes
