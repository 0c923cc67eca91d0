"""Core-banking events about a client's own products: opened, maturing, issued, overdue, closed."""

from __future__ import annotations

import datetime as dt
from functools import partial

from omnicrm.sim import names
from omnicrm.sim.episodes import Episode, Pools, core_touch, event, maturing_soon, someone
from omnicrm.sim.world import Product, Record, World

# (type, product class or "" for any, preferred lifecycle states of the product referred to, weight)
_OPERATIONAL = (
    ("product.opened", "", ("applied",), 1.5),
    ("deposit.maturing", "deposit", ("active", "maturing", "renewed"), 1.2),
    ("card.issued", "card", ("applied", "issued"), 1.2),
    ("card.activated", "card", ("issued",), 1.3),
    ("loan.approved", "consumer_loan", ("applied", "approved"), 0.8),
    ("loan.disbursed", "consumer_loan", ("approved", "active"), 0.8),
    ("payment.overdue", "consumer_loan", ("arrears",), 1.2),
    ("product.closed", "", ("dormant", "closed", "repaid", "lapsed"), 0.8),
    ("salary_project.enrolled", "salary_project", ("active",), 0.6),
)


def _operational(spec: tuple[str, str, tuple[str, ...], float], w: World, p: Pools) -> list[Record]:
    """A core-banking event about one of the client's own products of the right class."""
    event_type, product_class, prefer, _ = spec
    maturing = event_type == "deposit.maturing"
    pool = p.maturing if maturing and p.maturing else p.by_class.get(product_class)
    if not pool:
        return []
    person = someone(w, pool)
    products = [x for x in person.products if not product_class or x.product_class == product_class]
    preferred = [x for x in products if (maturing_soon(w, x) if maturing else x.state in prefer)]
    product = w.rng.choice(preferred or products)
    when = _before_maturity(w, product) if maturing else w.moment()
    return [event(event_type, when, core_touch(person), _operational_attributes(w, event_type, product))]


def _before_maturity(w: World, product: Product) -> dt.datetime:
    maturity = product.maturity or w.today
    offset = min(max((maturity - w.today).days - w.rng.randint(3, 14), 0), w.days - 1)
    return w.moment(offset)


def _operational_attributes(w: World, event_type: str, x: Product) -> Record:
    rng = w.rng
    attrs: Record = {"contract_number": x.contract}
    if event_type in ("product.opened", "product.closed"):
        attrs = {"product_class": x.product_class, **attrs}
    if event_type in ("product.opened", "deposit.maturing") and x.amount:
        attrs["amount"] = x.amount
    if event_type in ("product.opened", "deposit.maturing") and x.maturity is not None:
        attrs["maturity_date"] = x.maturity.isoformat()
    if event_type == "card.issued":
        attrs["card_type"] = x.terms.get("card_type", "debit")
    elif event_type in ("loan.approved", "loan.disbursed"):
        attrs["amount"] = x.amount
        if event_type == "loan.approved":
            attrs["pre_approved"] = rng.random() < 0.3
    elif event_type == "payment.overdue":
        attrs["days_overdue"] = rng.randint(1, 90)
        attrs["amount_due"] = round(x.amount / int(x.terms.get("term_months", 12)) * 1.3, 2)
    elif event_type == "salary_project.enrolled":
        attrs["employer"] = x.terms.get("employer", names.EMPLOYERS[0])
    return attrs


# (episode, weight): the weights above, scaled to add up to 10.
OPERATIONAL_EPISODES: list[tuple[Episode, float]] = [
    (partial(_operational, spec), spec[3] * 10 / 9.4) for spec in _OPERATIONAL
]
