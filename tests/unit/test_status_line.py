"""`omnicrm worker`'s status line, rendered from readings (no clock, no terminal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from omnicrm.cli.status import render
from omnicrm.store.operations import Figures, OutboxGroup, decided_position

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def reading(decided: int, *, newest: int = 1_500, outbox: tuple[OutboxGroup, ...] = ()) -> Figures:
    return Figures(
        newest_event=newest,
        decided_upto=decided,
        oldest_undecided_received_at=NOW - timedelta(seconds=12.5) if newest > decided else None,
        timers_due=4,
        timers_waiting=40,
        outbox=outbox,
        read_at=NOW,
    )


def test_the_line_shows_rate_lag_timers_outbox_and_uptime() -> None:
    outbox = (
        OutboxGroup("email", "queued", "", 10, 0),
        OutboxGroup("sms", "queued", "", 2, 0),
        OutboxGroup("email", "sent", "smtp-a", 200, 3),
        OutboxGroup("email", "delivered", "smtp-a", 50, 0),
        OutboxGroup("sms", "failed", "kannel", 1, 1),
        OutboxGroup("sms", "dead", "kannel", 3, 12),
        OutboxGroup("email", "withdrawn", "", 7, 0),
    )
    line = render(reading(1_200, outbox=outbox), previous=reading(900), elapsed_s=3.0, uptime_s=3_725)
    assert line == (
        "decided 100.0/s | lag 300 events (12.5 s) | timers due 4"
        " | outbox queued 12 sent 250 failed 1 dead 3 | up 1h02m"
    )
    assert "\n" not in line


def test_the_first_line_has_no_rate_and_an_idle_worker_no_lag() -> None:
    line = render(reading(1_500), previous=None, elapsed_s=0.0, uptime_s=42)
    assert line.startswith("decided 0.0/s | lag 0 events (0.0 s)")
    assert line.endswith("| up 42s")


def test_a_catch_up_that_restarts_behind_never_shows_a_negative_rate() -> None:
    line = render(reading(100), previous=reading(1_000), elapsed_s=3.0, uptime_s=61)
    assert line.startswith("decided 0.0/s")
    assert line.endswith("| up 1m01s")


def test_during_a_parallel_catch_up_the_slowest_partition_is_where_deciding_stands() -> None:
    assert decided_position({}) == 0
    assert decided_position({"decider": 700}) == 700
    positions = {"decider": 9_000, "decider/upto": 9_000, "decider/0of2": 4_100, "decider/1of2": 3_900}
    assert decided_position(positions) == 3_900
