"""Behavioural events from the web and the app: tariff pages, application funnels, log-ins, reactions.

`EVENT_EPISODES` is the whole mix, core-banking episodes from `operations` included; a weight is the
episode's share of the records divided by how many records it gives on average.
"""

from __future__ import annotations

import datetime as dt

from omnicrm.sim import names
from omnicrm.sim.episodes import TARIFF, Episode, Pools, Touch, digital_touch, event, someone
from omnicrm.sim.operations import OPERATIONAL_EPISODES
from omnicrm.sim.world import Record, Table, World

_APPLY = Table(
    [("card", 30), ("consumer_loan", 30), ("deposit", 20), ("current_account", 12), ("insurance", 8)]
)
_AUTH = Table([("password", 45), ("otp", 35), ("biometric", 20)])
_REGISTRATION = Table([("success", 45), ("failed", 20), ("abandoned", 35)])
_REACTIONS = Table(
    [
        (("delivered",), 35),
        (("delivered", "opened"), 25),
        (("delivered", "opened", "clicked"), 15),
        (("bounced",), 6),
        (("failed",), 4),
        (("delivered", "unsubscribed"), 3),
        (("delivered", "opened", "replied"), 2),
        (("delivered", "complained"), 1),
    ]
)
_STEPS_DONE = (0.40, 0.22, 0.07, 0.03)


def _tariff_visit(w: World, p: Pools) -> list[Record]:
    person = someone(w, p.digital)
    product_class = TARIFF.pick(w.rng)
    page = f"/{person.language}/{names.TARIFF_PAGES[product_class]}/{w.rng.choice(names.TARIFF_VARIANTS)}"
    touch = digital_touch(w, p, person, twin_ok=True)
    return [event("tariff_page.visited", w.moment(), touch, {"product_class": product_class, "page": page})]


def _funnel(w: World, p: Pools) -> list[Record]:
    """started -> some steps -> completed, abandoned or still open, all under one application_id."""
    rng, person = w.rng, someone(w, p.digital)
    at_branch = person.client and rng.random() < 0.06
    if at_branch:
        touch: Touch = ("branch", "branch", {"cbs_id": person.ids["cbs_id"]})
    else:
        touch = digital_touch(w, p, person, True)
    product_class = _APPLY.pick(rng)
    steps = names.APPLICATION_STEPS[product_class]
    base: Record = {"product_class": product_class, "application_id": f"app-{w.next_seq():08d}"}
    when = w.moment()
    started = dict(base)
    if product_class in ("consumer_loan", "deposit"):
        started["amount"] = float(rng.randrange(5_000, 300_001, 1_000))
    out = [event("application.started", when, touch, started)]
    done = len(steps) if rng.random() < 0.28 else rng.choices(range(len(steps)), _STEPS_DONE[: len(steps)])[0]
    for index in range(done):
        when += dt.timedelta(seconds=rng.randint(40, 900))
        attrs = {**base, "step": steps[index], "step_index": index + 1}
        out.append(event("application.step_completed", when, touch, attrs))
    if done == len(steps) and rng.random() < 0.9:
        out.append(
            event("application.completed", when + dt.timedelta(seconds=rng.randint(20, 600)), touch, base)
        )
    elif done < len(steps) and rng.random() < 0.8:
        attrs = {**base, "last_step": steps[done]}
        out.append(
            event("application.abandoned", when + dt.timedelta(minutes=rng.randint(30, 90)), touch, attrs)
        )
    return out


def _calculator(w: World, p: Pools) -> list[Record]:
    person = someone(w, p.digital)
    attrs = {
        "amount": float(w.rng.randrange(5_000, 300_001, 1_000)),
        "term_months": w.rng.choice((6, 12, 24, 36, 60)),
    }
    return [event("loan.calculator.used", w.moment(), digital_touch(w, p, person, twin_ok=True), attrs)]


def _auth_failed(w: World, p: Pools) -> list[Record]:
    person = someone(w, w.clients)
    method = _AUTH.pick(w.rng)
    attrs = {"method": method, "reason": w.rng.choice(names.AUTH_REASONS[method])}
    return [event("auth.failed", w.moment(), digital_touch(w, p, person), attrs)]


def _registration(w: World, p: Pools) -> list[Record]:
    pool = p.digital_prospects if p.digital_prospects and w.rng.random() < 0.85 else p.digital
    person = someone(w, pool)
    outcome = _REGISTRATION.pick(w.rng)
    attrs = {"outcome": outcome}
    if outcome != "success":
        attrs["step"] = w.rng.choice(names.REGISTRATION_STEPS)
    return [event("registration.attempted", w.moment(), digital_touch(w, p, person), attrs)]


def _card_activation(w: World, p: Pools) -> list[Record]:
    """One to three steps of activating the client's own card in the app."""
    rng, pool = w.rng, p.by_class.get("card")
    if not pool:
        return []
    person = someone(w, pool)
    cards = [x for x in person.products if x.product_class == "card"]
    card = rng.choice([x for x in cards if x.state == "issued"] or cards)
    touch = ("mobile_app", "mobile", {"device_id": person.ids["device_id"]})
    when, count, out = w.moment(), rng.randint(1, 3), []
    for index, step in enumerate(names.CARD_ACTIVATION_STEPS[:count]):
        failed = index == count - 1 and rng.random() < 0.15
        attrs = {"contract_number": card.contract, "step": step, "outcome": "failed" if failed else "success"}
        out.append(event("card.activation.step", when + dt.timedelta(seconds=40 * index), touch, attrs))
    return out


def _reaction(w: World, p: Pools) -> list[Record]:
    person = someone(w, p.digital)
    touch, message_id, when = digital_touch(w, p, person), w.token("message", "msg-"), w.moment()
    out = []
    for index, reaction in enumerate(_REACTIONS.pick(w.rng)):
        at = when + dt.timedelta(minutes=index * w.rng.randint(1, 240))
        out.append(event("message.reaction", at, touch, {"message_id": message_id, "reaction": reaction}))
    return out


EVENT_EPISODES: Table[Episode] = Table(
    [
        (_tariff_visit, 25),
        (_funnel, 40 / 3.3),
        (_calculator, 8),
        (_auth_failed, 5),
        (_registration, 4),
        (_card_activation, 4 / 2),
        (_reaction, 4 / 1.7),
        *OPERATIONAL_EPISODES,
    ]
)
