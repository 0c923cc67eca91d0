"""The scenario router: moves one instance through its routing table. Pure: state in, state out.

From a step it runs every instantaneous step (send, escalate, branch) until it must wait (a `wait`
step, or a send held back by quiet hours or caps) or the scenario ends. Before every send and every
escalation it asks `check` - the hard rules, the same as for a first decision - what may happen:
- go: the message or task is queued;
- skip: the channel is not permitted (consent, blacklist, a closed channel): the step is skipped and
  noted, and a wait right after it does not wait for a reaction to a message never sent - the
  routing table moves on at once (e.g. straight to the e-mail when web push is not permitted);
- hold: the step waits (caps, quiet hours) and is retried at that time;
- stop: the conversation is cancelled (do-not-contact, fraud case, complaint, goal reached);
- person: a vulnerable client is handed to a person instead of an automatic message.
Every skip, hold and stop is an Effect with its rule outcomes, so nothing is skipped silently. When
nothing the table offers is permitted, the conversation ends as `unreachable`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from omnicrm.domain.rules import RuleOutcome, StepVerdict
from omnicrm.domain.scenarios import Route, Scenario, Step, cel_context

# (step name, step, channel, channels already contacted in this run) -> what the hard rules say
Check = Callable[[str, Step, str, tuple[str, ...]], StepVerdict]
_MAX_STEPS = 50  # a routing table that loops without waiting stops here instead of spinning
_GO = StepVerdict("go")
EffectKind = Literal["send", "task", "skipped", "held", "cancelled"]
HANDOVER_QUEUE = "personal-contact"


def always(step_name: str, step: Step, channel: str, earlier: tuple[str, ...]) -> StepVerdict:
    """A check that lets every step go (no rules): what a bare routing table does."""
    return _GO


@dataclass(frozen=True, slots=True)
class Effect:
    """Something that happened at a step: a message to send, a task for the call centre, or a
    step skipped, held or cancelled - with the rules that said so."""

    kind: EffectKind
    step: str
    channel: str
    template: str | None = None
    queue: str | None = None
    note: str = ""
    rules: tuple[RuleOutcome, ...] = ()
    until: dt.datetime | None = None

    @property
    def contacts(self) -> bool:
        """A message or task that is queued (and so counts as a contact)."""
        return self.kind in ("send", "task")


@dataclass(frozen=True, slots=True)
class Advance:
    """Where the instance stands after running: its step, status, timer and what to do now.

    `fresh`: the run left a wait behind (it resumed one or passed one), so the wait it stands at now
    follows only this run's messages; otherwise it adds them to those it already followed."""

    step: str
    status: Literal["active", "completed", "cancelled"]
    due_at: dt.datetime | None
    outcome: str | None
    effects: tuple[Effect, ...]
    trail: tuple[str, ...]
    fresh: bool = False
    since_wait: int = 0  # effects[since_wait:] came after the last wait the run left behind


def _choose(routes: tuple[Route, ...], variables: Callable[[], Any]) -> str:
    for route in routes:
        if route.when is None or route.when.test(variables()):
            return route.goto
    return routes[-1].goto  # validated: the last row has no condition


def _effect(name: str, step: Step, channel: str, verdict: StepVerdict) -> Effect:
    """What a send or task step does: a message, a call-centre task, or - its channel not
    permitted - a skip with the reason."""
    if verdict.effect == "skip":
        return Effect("skipped", name, channel, step.template, step.queue, verdict.reason, verdict.outcomes)
    if step.kind == "send":
        return Effect("send", name, channel, step.template, rules=verdict.outcomes)
    return Effect(
        "task", name, "callcentre", queue=step.queue, note=step.reason or "", rules=verdict.outcomes
    )


def _lazy(context: Mapping[str, Any]) -> Callable[[], Any]:
    """The CEL variables of `context`, converted on first use and then reused by every route row."""
    made: list[Any] = []

    def variables() -> Any:
        if not made:
            made.append(cel_context(dict(context)))
        return made[0]

    return variables


def run(
    scenario: Scenario,
    step_name: str,
    *,
    now: dt.datetime,
    context: Mapping[str, Any],
    check: Check = always,
    reaction: str | None = None,
) -> Advance:
    """Run from `step_name`. With `reaction` (a string, "" for a timeout) the step must be a wait
    that is being resumed: its routes choose where to go first. `check` says, before every send and
    task, whether it may go now (see the module's docstring)."""
    effects: list[Effect] = []
    trail: list[str] = []
    ctx = _lazy({**context, "reaction": reaction or ""})
    timed_out = ctx if not reaction else _lazy({**context, "reaction": ""})
    name = step_name
    step: Step = scenario.steps[name]
    fresh, since_wait = False, 0
    if reaction is not None and step.kind == "wait":
        trail.append(name)
        name, fresh = _choose(step.routes, ctx), True

    def done(
        status: Literal["active", "completed", "cancelled"], due: dt.datetime | None, outcome: str | None
    ) -> Advance:
        return Advance(name, status, due, outcome, tuple(effects), tuple(trail), fresh, since_wait)

    unsent = False  # a send was skipped since the last wait and nothing went out after it
    for _ in range(_MAX_STEPS):
        step = scenario.steps[name]
        trail.append(name)
        if step.kind == "end":
            return done("completed", None, step.outcome)
        if step.kind == "wait" and unsent:
            # nothing went out to react to: the wait is over at once, as if it had timed out
            name, unsent = _choose(step.routes, timed_out), False
            fresh, since_wait = True, len(effects)
            continue
        if step.kind == "wait":
            assert step.wait is not None
            return done("active", now + step.wait, None)
        if step.kind == "branch":
            name = _choose(step.routes, ctx)
            continue
        if name in trail[:-1]:  # checked at load (a loop needs a wait); never send a step twice in one go
            permitted_once = any(e.step == name and e.kind != "skipped" for e in effects)
            return done("completed", None, "routing_loop" if permitted_once else "unreachable")
        channel = step.channel or "callcentre"
        verdict = check(name, step, channel, tuple(e.channel for e in effects if e.contacts))
        if (stopped := _stopped(verdict, name, step, channel, now, effects)) is not None:
            return done(*stopped)
        unsent = verdict.effect == "skip"
        effects.append(_effect(name, step, channel, verdict))
        assert step.next is not None
        name = step.next
    return done("completed", None, "routing_loop")


Status = Literal["active", "completed", "cancelled"]


def _stopped(
    verdict: StepVerdict, name: str, step: Step, channel: str, now: dt.datetime, effects: list[Effect]
) -> tuple[Status, dt.datetime | None, str | None] | None:
    """Where a checked send or task ends the run - held, cancelled, or handed to a person - with the
    step noted in `effects`; None when it goes (or is skipped) and the run carries on."""
    if verdict.effect == "hold" and verdict.until is not None and verdict.until > now:
        effects.append(_noted("held", name, step, channel, verdict))
        return "active", verdict.until, None
    if verdict.effect == "stop":
        effects.append(_noted("cancelled", name, step, channel, verdict))
        return "cancelled", None, verdict.outcome
    if verdict.effect == "person":
        reason = "; ".join(o.detail for o in verdict.outcomes if o.effect == "human")
        effects.append(Effect("task", "handover", "callcentre", queue=HANDOVER_QUEUE, note=reason))
        return "completed", None, "handed_to_person"
    return None


def _noted(kind: EffectKind, name: str, step: Step, channel: str, verdict: StepVerdict) -> Effect:
    return Effect(
        kind, name, channel, step.template, step.queue, verdict.reason, verdict.outcomes, verdict.until
    )
