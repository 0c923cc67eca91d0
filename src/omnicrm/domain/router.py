"""The scenario router: moves one instance through its routing table. Pure: state in, state out.

From a step it runs every instantaneous step (send, escalate, branch) until it must wait (a `wait`
step, or a send held back by quiet hours or caps) or the scenario ends. A send on a channel the
person does not permit (consent withdrawn, blacklisted) is skipped and noted - opt-out is honoured at
once - and a wait right after it does not wait for a reaction to a message never sent: the routing
table moves on at once (e.g. straight to the e-mail when web push is not permitted). When nothing
the table offers is permitted, the conversation ends as `unreachable`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from omnicrm.domain.scenarios import Route, Scenario, Step, cel_context

# (channel, step kind, channels already contacted in this run) -> wait until, or None to go now
Hold = Callable[[str, str, tuple[str, ...]], dt.datetime | None]
_MAX_STEPS = 50  # a routing table that loops without waiting stops here instead of spinning


@dataclass(frozen=True, slots=True)
class Effect:
    """Something to do now: a message to send, a task for the call centre, or a skipped send."""

    kind: Literal["send", "task", "skipped"]
    step: str
    channel: str
    template: str | None = None
    queue: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Advance:
    """Where the instance stands after running: its step, status, timer and what to do now."""

    step: str
    status: Literal["active", "completed"]
    due_at: dt.datetime | None
    outcome: str | None
    effects: tuple[Effect, ...]
    trail: tuple[str, ...]


def _choose(routes: tuple[Route, ...], variables: Callable[[], Any]) -> str:
    for route in routes:
        if route.when is None or route.when.test(variables()):
            return route.goto
    return routes[-1].goto  # validated: the last row has no condition


def _effect(name: str, step: Step, channel: str, *, sent: bool) -> Effect:
    """What a send or task step does: a message, a call-centre task, or - its channel not
    permitted - a skip with the reason."""
    if not sent:
        reason = f"{channel} is not permitted for this person now"
        return Effect("skipped", name, channel, step.template, step.queue, reason)
    if step.kind == "send":
        return Effect("send", name, channel, step.template)
    return Effect("task", name, "callcentre", queue=step.queue, note=step.reason or "")


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
    permitted: Collection[str],
    hold: Hold | None = None,
    reaction: str | None = None,
) -> Advance:
    """Run from `step_name`. With `reaction` (a string, "" for a timeout) the step must be a wait
    that is being resumed: its routes choose where to go first. `hold` says until when a send or
    a task on a channel must wait (quiet hours, frequency caps), given the channels already
    contacted in this run; the instance then waits on that step and retries it."""
    effects: list[Effect] = []
    trail: list[str] = []
    ctx = _lazy({**context, "reaction": reaction or ""})
    timed_out = ctx if not reaction else _lazy({**context, "reaction": ""})
    name = step_name
    step: Step = scenario.steps[name]
    if reaction is not None and step.kind == "wait":
        trail.append(name)
        name = _choose(step.routes, ctx)
    unsent = False  # a send was skipped since the last wait and nothing went out after it
    for _ in range(_MAX_STEPS):
        step = scenario.steps[name]
        trail.append(name)
        if step.kind == "end":
            return Advance(name, "completed", None, step.outcome, tuple(effects), tuple(trail))
        if step.kind == "wait" and unsent:
            # nothing went out to react to: the wait is over at once, as if it had timed out
            name, unsent = _choose(step.routes, timed_out), False
            continue
        if step.kind == "wait":
            assert step.wait is not None
            return Advance(name, "active", now + step.wait, None, tuple(effects), tuple(trail))
        if step.kind == "branch":
            name = _choose(step.routes, ctx)
            continue
        if name in trail[:-1]:  # checked at load (a loop needs a wait); never send a step twice in one go
            permitted_once = any(e.step == name and e.kind != "skipped" for e in effects)
            outcome = "routing_loop" if permitted_once else "unreachable"
            return Advance(name, "completed", None, outcome, tuple(effects), tuple(trail))
        channel = step.channel or "callcentre"
        if channel in permitted and hold is not None:
            earlier = tuple(e.channel for e in effects if e.kind != "skipped")
            until = hold(channel, step.kind, earlier)
            if until is not None and until > now:
                return Advance(name, "active", until, None, tuple(effects), tuple(trail))
        unsent = channel not in permitted
        effects.append(_effect(name, step, channel, sent=not unsent))
        assert step.next is not None
        name = step.next
    return Advance(name, "completed", None, "routing_loop", tuple(effects), tuple(trail))
