"""The SMS benchmark counts what really happened: every accepted SMS arrived at the fake SMSC."""

from __future__ import annotations

import pytest

from omnicrm.bench import kannel_peer, sms


def test_a_small_run_accepts_and_delivers_every_message() -> None:
    missing = kannel_peer.available()
    if missing:
        pytest.skip(missing)

    figures = sms.run(n=300, threads=4)

    assert figures["sent"] == 300
    assert figures["accepted"] == 300
    assert figures["received_at_smsc"] == 300
    assert figures["accepted_per_s"] > 0
