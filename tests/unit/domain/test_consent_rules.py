"""Consent state derived from the ledger: latest wins, ties go to withdrawal, sane defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicrm.domain.consent import ConsentEntry, ConsentState, current_consents, granted_consents
from omnicrm.domain.vocabulary import CHANNELS, PURPOSES

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
ALL_KEYS = {(c, p) for c in CHANNELS for p in PURPOSES}


def entry(
    granted: bool,
    at: datetime,
    channel: str = "sms",
    purpose: str = "marketing",
    source: str = "api",
    legal_basis: str = "consent",
) -> ConsentEntry:
    return ConsentEntry(channel, purpose, granted, legal_basis, source, at)


@pytest.mark.parametrize("is_client", [True, False])
def test_every_channel_and_purpose_is_present(is_client: bool) -> None:
    state = current_consents([], is_client=is_client)
    assert set(state) == ALL_KEYS
    for (channel, purpose), s in state.items():
        assert (s.channel, s.purpose) == (channel, purpose)


def test_client_defaults_service_by_contract_and_no_marketing() -> None:
    state = current_consents([], is_client=True)
    for channel in CHANNELS:
        assert state[(channel, "service")] == ConsentState(
            channel, "service", True, "contract", "default", None
        )
        assert state[(channel, "marketing")] == ConsentState(
            channel, "marketing", False, "none", "default", None
        )


def test_prospect_defaults_grant_nothing() -> None:
    state = current_consents([], is_client=False)
    assert all(not s.granted and s.legal_basis == "none" and s.since is None for s in state.values())


def test_one_entry_changes_only_its_own_channel_and_purpose() -> None:
    state = current_consents([entry(True, T0, "email", "marketing", source="web")], is_client=False)
    assert state[("email", "marketing")] == ConsentState("email", "marketing", True, "consent", "web", T0)
    assert not state[("sms", "marketing")].granted
    assert not state[("email", "service")].granted


def test_withdrawn_service_consent_overrides_the_contract_default() -> None:
    state = current_consents([entry(False, T0, "sms", "service")], is_client=True)
    assert not state[("sms", "service")].granted
    assert state[("email", "service")].granted


@pytest.mark.parametrize("reverse", [False, True])
def test_latest_effective_at_wins_regardless_of_order(reverse: bool) -> None:
    ledger = [
        entry(True, T0, source="first"),
        entry(False, T0 + timedelta(days=1), source="second"),
        entry(True, T0 + timedelta(days=2), source="third"),
    ]
    if reverse:
        ledger.reverse()
    s = current_consents(ledger, is_client=False)[("sms", "marketing")]
    assert (s.granted, s.source, s.since) == (True, "third", T0 + timedelta(days=2))


def test_recorded_late_but_effective_earlier_does_not_win() -> None:
    ledger = [entry(False, T0 + timedelta(hours=1), source="withdrawal"), entry(True, T0, source="backfill")]
    s = current_consents(ledger, is_client=False)[("sms", "marketing")]
    assert not s.granted
    assert s.source == "withdrawal"


@pytest.mark.parametrize("withdrawal_first", [False, True])
def test_tie_goes_to_withdrawal(withdrawal_first: bool) -> None:
    ledger = [entry(True, T0, source="grant"), entry(False, T0, source="withdrawal")]
    if withdrawal_first:
        ledger.reverse()
    s = current_consents(ledger, is_client=True)[("sms", "marketing")]
    assert (s.granted, s.source, s.since) == (False, "withdrawal", T0)


def test_timezones_are_compared_as_instants() -> None:
    kyiv = datetime(2026, 1, 1, 14, 0, tzinfo=ZoneInfo("Europe/Kyiv"))  # 12:00 UTC
    ledger = [entry(True, datetime(2026, 1, 1, 13, 0, tzinfo=UTC)), entry(False, kyiv)]
    assert current_consents(ledger, is_client=False)[("sms", "marketing")].granted


_TIMES = [T0 + timedelta(hours=h) for h in range(4)]  # few instants: ties are frequent
_ENTRIES = st.builds(
    ConsentEntry,
    channel=st.sampled_from(CHANNELS),
    purpose=st.sampled_from(PURPOSES),
    granted=st.booleans(),
    legal_basis=st.sampled_from(["consent", "contract", "legitimate_interest"]),
    source=st.sampled_from(["api", "web", "branch"]),
    effective_at=st.sampled_from(_TIMES),
)


@settings(max_examples=100, deadline=None)
@given(ledger=st.lists(_ENTRIES, max_size=25), is_client=st.booleans(), data=st.data())
def test_order_of_the_ledger_does_not_change_the_state(
    ledger: list[ConsentEntry], is_client: bool, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(ledger))
    before = current_consents(ledger, is_client=is_client)
    after = current_consents(shuffled, is_client=is_client)
    assert set(before) == set(after) == ALL_KEYS
    for key in ALL_KEYS:
        assert (before[key].granted, before[key].since) == (after[key].granted, after[key].since)


@settings(max_examples=100, deadline=None)
@given(ledger=st.lists(_ENTRIES, max_size=25), is_client=st.booleans())
def test_state_matches_the_documented_rule(ledger: list[ConsentEntry], is_client: bool) -> None:
    state = current_consents(ledger, is_client=is_client)
    for (channel, purpose), s in state.items():
        mine = [e for e in ledger if (e.channel, e.purpose) == (channel, purpose)]
        if not mine:
            assert s.since is None
            assert s.granted is (is_client and purpose == "service")
            continue
        latest = max(e.effective_at for e in mine)
        at_latest = [e for e in mine if e.effective_at == latest]
        assert s.since == latest
        assert s.granted is all(e.granted for e in at_latest)
        # The state's provenance is that of an entry that actually decided it.
        assert any(
            (e.granted, e.legal_basis, e.source) == (s.granted, s.legal_basis, s.source) for e in at_latest
        )


@settings(max_examples=100, deadline=None)
@given(ledger=st.lists(_ENTRIES, max_size=25), is_client=st.booleans(), offset=st.integers(-30, 30))
def test_the_engine_s_short_fold_agrees_with_the_full_state(
    ledger: list[ConsentEntry], is_client: bool, offset: int
) -> None:
    now = T0 + timedelta(days=offset)
    full = current_consents(ledger, is_client=is_client, now=now)
    assert granted_consents(ledger, is_client=is_client, now=now) == {k: s.granted for k, s in full.items()}
