"""Scenario templates: versioned data (scenarios/*.yaml) checked and compiled once at load.

A template says when a conversation starts (trigger), for whom (audience), when it has done its
job (goal), how often a person may re-enter it, and its routing table: steps that send, wait for a
reaction, branch, escalate to the call centre or end. Every `when` is a CEL expression compiled
once; it sees `customer`, `event`, `products` and (in routes) `reaction`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

import cel
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from omnicrm.domain.messages import MessageSpec
from omnicrm.domain.policy import Policy
from omnicrm.domain.vocabulary import ProductClass

Purpose = Literal["service", "retention", "commercial", "collections"]
# Service, collections (arrears prevention) and retention outrank commercial offers.
PURPOSE_RANK: dict[str, int] = {"service": 3, "collections": 3, "retention": 2, "commercial": 1}
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,63}$")]
Expression = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
_DURATION = re.compile(r"^(\d+)([mhd])$")


def parse_duration(text: str) -> timedelta:
    """'30m', '24h', '7d' -> timedelta; raises ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"duration {text!r} must look like 30m, 24h or 7d")
    amount, unit = int(match.group(1)), match.group(2)
    return {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventMatchSpec(_Strict):
    event: Annotated[str, StringConstraints(min_length=3, max_length=64)]
    when: Expression | None = None


class RouteSpec(_Strict):
    when: Expression | None = None  # no condition: "otherwise"
    goto: Slug


class SendSpec(_Strict):
    channel: Literal["email", "sms", "webpush", "inapp"]
    template: Slug


class EscalateSpec(_Strict):
    queue: Slug
    reason: Annotated[str, StringConstraints(min_length=3, max_length=200)]


class StepSpec(_Strict):
    send: SendSpec | None = None
    wait: Annotated[str, StringConstraints(pattern=r"^\d+[mhd]$")] | None = None
    branch: bool = False
    escalate: EscalateSpec | None = None
    end: Slug | None = None
    next: Slug | None = None
    routes: list[RouteSpec] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _one_action(self) -> StepSpec:
        actions = [
            self.send is not None,
            self.wait is not None,
            self.branch,
            self.escalate is not None,
            self.end is not None,
        ]
        if sum(actions) != 1:
            raise ValueError("a step does exactly one of: send, wait, branch, escalate, end")
        if self.end is not None and (self.next or self.routes):
            raise ValueError("an end step has no `next` or `routes`")
        if (self.wait is not None or self.branch) and (not self.routes or self.routes[-1].when is not None):
            raise ValueError(
                "wait and branch steps need `routes` ending with an unconditional row (no `when`)"
            )
        if (self.send is not None or self.escalate is not None) and not self.next:
            raise ValueError("send and escalate steps need `next`")
        return self


class ReentrySpec(_Strict):
    mode: Literal["never", "after_days", "unless_goal"]
    days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _days(self) -> ReentrySpec:
        if (self.mode == "after_days") != (self.days is not None):
            raise ValueError("`days` is required with mode after_days and allowed only there")
        return self


class ScenarioSpec(_Strict):
    id: Slug
    version: int = Field(ge=1)
    name: Annotated[str, StringConstraints(min_length=3, max_length=200)]
    purpose: Purpose
    product_class: ProductClass | None = None
    priority: int = Field(ge=0, le=100)
    trigger: EventMatchSpec
    audience: Expression | None = None
    goal: EventMatchSpec
    reentry: ReentrySpec
    cooling_off_days: int = Field(default=0, ge=0, le=365)
    migrate_from: list[int] = Field(default_factory=list)
    start: Slug
    steps: dict[Slug, StepSpec] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _graph(self) -> ScenarioSpec:
        if self.start not in self.steps:
            raise ValueError(f"start step {self.start!r} is not defined")
        for name, step in self.steps.items():
            for target in [step.next, *(r.goto for r in step.routes)]:
                if target is not None and target not in self.steps:
                    raise ValueError(f"step {name!r} goes to undefined step {target!r}")
        if not any(s.end is not None for s in self.steps.values()):
            raise ValueError("a scenario needs at least one end step")
        if loop := self._loop_without_wait():
            raise ValueError(f"steps {' -> '.join(loop)} loop without a wait: the client would be flooded")
        return self

    def _loop_without_wait(self) -> list[str] | None:
        """A cycle through send, branch and escalate steps only (a wait in between makes it a reminder)."""
        moving = {
            name: [t for t in (step.next, *(r.goto for r in step.routes)) if t is not None]
            for name, step in self.steps.items()
            if step.wait is None and step.end is None
        }
        done: set[str] = set()

        def visit(name: str, path: list[str]) -> list[str] | None:
            if name in path:
                return [*path[path.index(name) :], name]
            if name in done or name not in moving:
                return None
            for target in moving[name]:
                if found := visit(target, [*path, name]):
                    return found
            done.add(name)
            return None

        return next((loop for name in moving if (loop := visit(name, []))), None)


EVENT_ONLY = frozenset({"event", "reaction"})


@dataclass(frozen=True, slots=True)
class Condition:
    """A CEL expression compiled once; `test` returns a bool or raises ValueError."""

    source: str
    program: Any
    variables: frozenset[str] = frozenset()  # the variables it reads ("event", "customer", ...)

    @property
    def reads_event_only(self) -> bool:
        """True when only the event (and the reaction) decide it, whoever the person is."""
        return self.variables <= EVENT_ONLY

    def test(self, context: dict[str, Any] | cel.Context) -> bool:
        """Evaluate on a dict, or faster on a `cel_context` built once for several conditions."""
        result = self.program.execute(context)
        if not isinstance(result, bool):
            raise ValueError(f"condition {self.source!r} gave {result!r}, not true/false")
        return result


def cel_context(variables: dict[str, Any]) -> cel.Context:
    """Variables converted to CEL once (~30 us); each evaluation on it then costs under a microsecond."""
    context = cel.Context()
    for name, value in variables.items():
        context.add_variable(name, value)
    return context


def compile_condition(source: str | None) -> Condition | None:
    """Compile a CEL expression; raises ValueError with the parser's message."""
    if source is None:
        return None
    program = cel.compile(source)
    return Condition(source, program, frozenset(program.variables()))


@dataclass(frozen=True, slots=True)
class Route:
    when: Condition | None
    goto: str


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    kind: Literal["send", "wait", "branch", "escalate", "end"]
    channel: str | None = None
    template: str | None = None
    wait: timedelta | None = None
    queue: str | None = None
    reason: str | None = None
    outcome: str | None = None
    next: str | None = None
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A compiled template, ready for the decision engine and the scenario router."""

    id: str
    version: int
    name: str
    purpose: str
    product_class: str | None
    priority: int
    trigger_event: str
    trigger_when: Condition | None
    audience: Condition | None
    goal_event: str
    goal_when: Condition | None
    reentry: str
    reentry_days: int | None
    cooling_off_days: int
    migrate_from: tuple[int, ...]
    start: str
    steps: dict[str, Step]

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def channels(self) -> tuple[str, ...]:
        """Channels of the send steps, in the order of the routing table."""
        return tuple(dict.fromkeys(s.channel for s in self.steps.values() if s.channel))

    def first_contact(self) -> Step | None:
        """The first send or escalate step reached from the start by `next` links."""
        seen: set[str] = set()
        name: str | None = self.start
        while name is not None and name not in seen:
            seen.add(name)
            step = self.steps[name]
            if step.kind in ("send", "escalate"):
                return step
            name = step.next or (step.routes[-1].goto if step.routes else None)
        return None


def _step(name: str, spec: StepSpec) -> Step:
    routes = tuple(Route(compile_condition(r.when), r.goto) for r in spec.routes)
    if spec.send is not None:
        return Step(name, "send", channel=spec.send.channel, template=spec.send.template, next=spec.next)
    if spec.wait is not None:
        return Step(name, "wait", wait=parse_duration(spec.wait), routes=routes)
    if spec.escalate is not None:
        return Step(
            name,
            "escalate",
            channel="callcentre",
            queue=spec.escalate.queue,
            reason=spec.escalate.reason,
            next=spec.next,
        )
    if spec.end is not None:
        return Step(name, "end", outcome=spec.end)
    return Step(name, "branch", routes=routes)


def compile_scenario(spec: ScenarioSpec) -> Scenario:
    """Turn a checked spec into a Scenario; CEL syntax errors raise ValueError."""
    return Scenario(
        id=spec.id,
        version=spec.version,
        name=spec.name,
        purpose=spec.purpose,
        product_class=spec.product_class,
        priority=spec.priority,
        trigger_event=spec.trigger.event,
        trigger_when=compile_condition(spec.trigger.when),
        audience=compile_condition(spec.audience),
        goal_event=spec.goal.event,
        goal_when=compile_condition(spec.goal.when),
        reentry=spec.reentry.mode,
        reentry_days=spec.reentry.days,
        cooling_off_days=spec.cooling_off_days,
        migrate_from=tuple(spec.migrate_from),
        start=spec.start,
        steps={name: _step(name, step) for name, step in spec.steps.items()},
    )


@dataclass(frozen=True, slots=True)
class Library:
    """Everything the engine runs on: every version of every template, and the current one of each."""

    versions: dict[tuple[str, int], Scenario]
    policy: Policy
    # scenario id -> the version new conversations start on; None: the highest version of each.
    # A template left out is retired: nothing new starts on it, running conversations finish.
    current_versions: dict[str, int] | None = None
    # message template id -> its texts (scenarios/messages/*.yaml), rendered by dispatch
    messages: Mapping[str, MessageSpec] = field(default_factory=dict)

    @property
    def policy_version(self) -> int:
        return self.policy.version

    @property
    def current(self) -> dict[str, Scenario]:
        if self.current_versions is not None:
            return {sid: self.versions[(sid, v)] for sid, v in sorted(self.current_versions.items())}
        latest: dict[str, Scenario] = {}
        for (scenario_id, _), scenario in sorted(self.versions.items()):
            latest[scenario_id] = scenario
        return latest

    def get(self, scenario_id: str, version: int) -> Scenario | None:
        return self.versions.get((scenario_id, version))
