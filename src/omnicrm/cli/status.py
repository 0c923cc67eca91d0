"""`omnicrm worker`'s status line: one line, rewritten in place every few seconds in a terminal.

It prints the figures `GET /metrics` serves (store/operations.py), so a person at the terminal and
Prometheus see the same numbers; the rate of decisions is the move of the worker's offset between
two readings. Nothing is printed when stdout is not a terminal: there the JSON logs speak.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console
from rich.live import Live
from rich.text import Text

from omnicrm.bootstrap import Container
from omnicrm.store.operations import Figures, read_figures

INTERVAL_S = 5.0  # each reading scans the outbox (~0.1-0.2 s on 100k rows in SQLite): not more often
# Rows that left for the client (a status after `sent` says the provider took it).
_LEFT = ("sent", "delivered", "opened", "clicked", "replied")


def _duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def render(figures: Figures, *, previous: Figures | None, elapsed_s: float, uptime_s: float) -> str:
    """The status line of one reading; `previous` (read `elapsed_s` earlier) gives the rate."""
    rate = 0.0
    if previous is not None and elapsed_s > 0:
        # A parallel catch-up's first reading may start behind the whole queue's: never a negative rate.
        rate = max(0, figures.decided_upto - previous.decided_upto) / elapsed_s
    sent = sum(figures.outbox_by(status=s) for s in _LEFT)
    return (
        f"decided {rate:,.1f}/s | lag {figures.lag_events:,} events ({figures.lag_seconds:,.1f} s)"
        f" | timers due {figures.timers_due:,}"
        f" | outbox queued {figures.outbox_by(status='queued'):,} sent {sent:,}"
        f" failed {figures.outbox_by(status='failed'):,} dead {figures.outbox_by(status='dead'):,}"
        f" | up {_duration(uptime_s)}"
    )


class StatusLine:
    """Reads the figures every `interval_s` seconds on its own thread and shows the line with rich's
    live display, which keeps it under whatever else is printed."""

    def __init__(self, read: Callable[[], Figures], console: Console, interval_s: float = INTERVAL_S) -> None:
        self.read, self.console, self.interval_s = read, console, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = Live(console=console, auto_refresh=False, transient=True)

    def start(self) -> None:
        self._live.start()
        self._thread = threading.Thread(target=self._run, name="omnicrm-status-line", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._live.stop()

    def _run(self) -> None:
        started = time.monotonic()
        previous: Figures | None = None
        before = started
        while not self._stop.is_set():
            try:
                figures = self.read()
            except Exception as exc:  # a database restart must not end the worker's display for good
                self._live.update(Text(f"status unavailable: {type(exc).__name__}"), refresh=True)
            else:
                moment = time.monotonic()
                line = render(
                    figures, previous=previous, elapsed_s=moment - before, uptime_s=moment - started
                )
                self._live.update(Text(line, no_wrap=True, overflow="ellipsis"), refresh=True)
                previous, before = figures, moment
            self._stop.wait(self.interval_s)


def figures_of(container: Container) -> Callable[[], Figures]:
    """Reads the figures now, in a snapshot of `container`'s database."""

    def read() -> Figures:
        with container.reader() as conn:
            return read_figures(conn, datetime.now(UTC))

    return read
