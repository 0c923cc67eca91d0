"""Consent ledger: every grant or withdrawal is appended; the current state is derived, never stored.

Rules (documented in the README):
- per (channel, purpose) the entry with the latest `effective_at` wins; on a tie, withdrawal wins;
- without any entry, `service` messages rest on the contract for clients (granted, basis
  "contract") and are not allowed for prospects; `marketing` is never assumed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from omnicrm.domain.vocabulary import CHANNELS, PURPOSES


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    """One line of the ledger, as recorded."""

    channel: str
    purpose: str
    granted: bool
    legal_basis: str
    source: str
    effective_at: datetime


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The derived state for one channel and purpose, with where it came from."""

    channel: str
    purpose: str
    granted: bool
    legal_basis: str
    source: str
    since: datetime | None


def current_consents(
    entries: Iterable[ConsentEntry], *, is_client: bool, now: datetime | None = None
) -> dict[tuple[str, str], ConsentState]:
    """Fold the ledger into the state of every channel x purpose at `now` (entries dated later wait)."""
    latest = _latest(entries, now)
    state: dict[tuple[str, str], ConsentState] = {}
    for channel in CHANNELS:
        for purpose in PURPOSES:
            last = latest.get((channel, purpose))
            if last is not None:
                state[(channel, purpose)] = ConsentState(
                    channel, purpose, last.granted, last.legal_basis, last.source, last.effective_at
                )
            elif purpose == "service" and is_client:
                state[(channel, purpose)] = ConsentState(channel, purpose, True, "contract", "default", None)
            else:
                state[(channel, purpose)] = ConsentState(channel, purpose, False, "none", "default", None)
    return state


_KEYS = tuple((channel, purpose) for channel in CHANNELS for purpose in PURPOSES)


def granted_consents(
    entries: Iterable[ConsentEntry], *, is_client: bool, now: datetime | None = None
) -> dict[tuple[str, str], bool]:
    """Only whether each channel x purpose is granted at `now` (what the decision engine reads):
    the same fold as `current_consents`, without the provenance."""
    latest = _latest(entries, now)
    return {
        key: last.granted if (last := latest.get(key)) is not None else (key[1] == "service" and is_client)
        for key in _KEYS
    }


def _latest(entries: Iterable[ConsentEntry], now: datetime | None) -> dict[tuple[str, str], ConsentEntry]:
    """The entry in force per (channel, purpose): latest `effective_at`, withdrawal on a tie."""
    latest: dict[tuple[str, str], ConsentEntry] = {}
    for entry in entries:
        if now is not None and entry.effective_at > now:
            continue
        key = (entry.channel, entry.purpose)
        held = latest.get(key)
        if (
            held is None
            or entry.effective_at > held.effective_at
            or (entry.effective_at == held.effective_at and not entry.granted)
        ):
            latest[key] = entry
    return latest
