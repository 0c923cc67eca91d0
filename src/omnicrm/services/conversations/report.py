"""What a run of the decision worker did: counts that add up across batches and processes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

_COUNTS = (
    "events",
    "decisions",
    "started",
    "completed",
    "messages",
    "tasks",
    "skipped",
    "held",
    "cancelled",
    "yielded",
    "scanned",
    "redone",
    "timers",
)


@dataclass(slots=True)
class Report:
    events: int = 0
    decisions: int = 0
    started: int = 0
    completed: int = 0
    messages: int = 0
    tasks: int = 0
    skipped: int = 0  # sends and tasks skipped (channel not permitted), each stored with its reason
    held: int = 0  # steps held (caps, quiet hours) until a later time, each stored with its reason
    cancelled: int = 0  # conversations a hard rule ended at a step (complaint, opt-out, fraud...)
    yielded: int = 0  # queued messages that gave their cap slot to a contact of higher priority
    scanned: int = 0  # queued events read (a partition reads others' events too, and skips them)
    redone: int = 0  # batches decided again under the write lock: the state moved while deciding
    timers: int = 0  # expired timers handled
    decided_at: list[datetime] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNTS}

    @classmethod
    def of(cls, counts: dict[str, int]) -> Report:
        report = cls()
        for name in _COUNTS:
            setattr(report, name, counts.get(name, 0))
        return report

    def add(self, other: Report) -> None:
        """Add `other`'s counts to these."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
