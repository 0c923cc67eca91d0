"""Call-centre tasks as data: the queues (scenarios/queues.yaml) and the dispositions an operator
closes a task with. Pure: the store and the services read these, nothing here touches I/O.

A task's life: open -> claimed -> closed, or open/claimed -> withdrawn (its conversation ended: goal
reached, opt-out, merge). Priority 1 is the most urgent; lists go by priority, then due time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

OPEN, CLAIMED, CLOSED, WITHDRAWN = "open", "claimed", "closed", "withdrawn"
TASK_STATUSES: Final = (OPEN, CLAIMED, CLOSED, WITHDRAWN)
LIVE: Final = (OPEN, CLAIMED)  # what a conversation's end withdraws

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
Priority = Annotated[int, Field(ge=1, le=9)]


@dataclass(frozen=True, slots=True)
class Disposition:
    """What an operator's closing code means: the reaction it becomes (bound to the task, so the
    conversation waiting on that task branches on it) and whether it is the client's opt-out."""

    reaction: str
    opt_out: bool = False


# The one dictionary of dispositions. `reaction` is a `message.reaction` value (catalogue): routes of
# a wait after a call step test it (`reaction == "accepted"`). `do_not_call` becomes `unsubscribed`,
# which the intake honours as any opt-out (services/intake/opt_out.py): the call-centre marketing consent
# is withdrawn in the transaction that stores it, and queued marketing calls are withdrawn.
DISPOSITIONS: Final[dict[str, Disposition]] = {
    "offer_accepted": Disposition("accepted"),
    "offer_declined": Disposition("declined"),
    "callback_requested": Disposition("callback_requested"),
    "no_answer": Disposition("no_answer"),
    "wrong_number": Disposition("wrong_number"),
    "resolved": Disposition("resolved"),
    "do_not_call": Disposition("unsubscribed", opt_out=True),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueSpec(_Strict):
    """One queue: who works it (skill, branch), how soon its tasks are due, and an optional
    priority that overrides the purpose's default."""

    skill: Name | None = None
    branch: Name | None = None
    due_minutes: int = Field(default=0, ge=0, le=60 * 24 * 30)
    priority: Priority | None = None


class QueueBook(_Strict):
    """scenarios/queues.yaml: every queue, the operators' capacity and the service levels."""

    version: int = Field(ge=1)
    operator_capacity: int = Field(ge=1, le=100)  # tasks one operator holds claimed at once
    sla_minutes: dict[Priority, Annotated[int, Field(ge=1, le=60 * 24 * 30)]]
    default_priority: dict[Name, Priority]  # scenario purpose -> priority
    fallback: Name  # the queue a task naming an unknown queue takes its settings from
    queues: dict[Name, QueueSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> QueueBook:
        if self.fallback not in self.queues:
            raise ValueError(f"fallback queue {self.fallback!r} is not among the queues")
        used = set(self.default_priority.values()) | {q.priority for q in self.queues.values() if q.priority}
        missing = sorted(p for p in used if p not in self.sla_minutes)
        if missing:
            raise ValueError(f"priorities {missing} are used but have no sla_minutes")
        return self

    def spec(self, queue: str) -> QueueSpec:
        return self.queues.get(queue) or self.queues[self.fallback]

    def plan(self, queue: str, purpose: str, now: dt.datetime) -> TaskPlan:
        """Priority, due time and SLA deadline of a task queued on `queue` for a conversation of
        `purpose` (an unknown purpose is treated as the least urgent one configured)."""
        spec = self.spec(queue)
        fallback_priority = max(self.default_priority.values(), default=max(self.sla_minutes))
        priority = spec.priority or self.default_priority.get(purpose, fallback_priority)
        sla = self.sla_minutes.get(priority, max(self.sla_minutes.values()))
        return TaskPlan(
            priority=priority,
            skill=spec.skill,
            branch=spec.branch,
            due_at=now + dt.timedelta(minutes=spec.due_minutes),
            sla_at=now + dt.timedelta(minutes=sla),
        )


@dataclass(frozen=True, slots=True)
class TaskPlan:
    priority: int
    skill: str | None
    branch: str | None
    due_at: dt.datetime
    sla_at: dt.datetime
