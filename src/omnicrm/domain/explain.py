"""Decisions in words a compliance officer reads: what was decided, and every reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ACTIONS = {
    "contact": "contact now",
    "delay": "contact later",
    "suppress": "do not contact",
    "escalate": "hand over to a person",
    "join": "continue the running conversation",
    "hold": "hold this step",
    "skip": "skip this step",
    "cancel": "end the conversation",
}
_VERDICT = {
    "pass": "ok",
    "suppress": "blocks",
    "delay": "postpones",
    "human": "needs a person",
    "join": "joins",
}


def explain(decision: Mapping[str, Any]) -> str:
    """A stored decision (dict) as a short paragraph of plain sentences."""
    cause = decision["event_id"]
    if step := decision.get("step"):  # a step of a running conversation, not a first decision
        moved_by = f"its timer ({cause[6:]})" if cause.startswith("timer@") else f"event {cause}"
        cause_words = f"step {step}, moved by {moved_by}"
    else:
        cause_words = f"triggered by event {cause}"
    head = (
        f"{decision['decided_at']:%Y-%m-%d %H:%M} UTC - scenario {decision['scenario_id']} "
        f"v{decision['scenario_version']} ({decision['purpose']}), {cause_words}: "
        f"{_ACTIONS[decision['action']]}"
    )
    if decision.get("channel"):
        head += f" via {decision['channel']}"
    if decision["action"] in ("delay", "hold") and decision.get("due_at"):
        head += (
            f" {'at' if decision['action'] == 'delay' else 'until'} {decision['due_at']:%Y-%m-%d %H:%M} UTC"
        )
    lines = [head + "."]
    for rule in decision["rules"]:
        lines.append(
            f"  - {rule['rule']}: {_VERDICT.get(rule['effect'], rule['effect'])} - {rule['detail']}."
        )
    if decision.get("score"):
        terms = ", ".join(f"{k} {v:.2f}" for k, v in decision["score"].items())
        lines.append(f"  Score {decision['total']:.2f} = {terms}.")
    if decision.get("arbitration"):
        lines.append(f"  Arbitration: {decision['arbitration']}.")
    lines.append(f"  Versions: scenario {decision['scenario_version']}, policy {decision['policy_version']}.")
    return "\n".join(lines)
