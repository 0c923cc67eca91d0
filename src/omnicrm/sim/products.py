"""A client's products: which classes, lifecycle state, contract terms and dates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from omnicrm.sim import names
from omnicrm.sim.world import Person, Product, Record, Table, World

_PRODUCT_MIX = (
    ("current_account", 0.95),
    ("card", 0.80),
    ("deposit", 0.30),
    ("consumer_loan", 0.20),
    ("salary_project", 0.25),
    ("insurance", 0.10),
)
_STATES: dict[str, Table[str]] = {
    "current_account": Table([("active", 88), ("dormant", 8), ("applied", 2), ("closed", 2)]),
    "card": Table([("active", 80), ("issued", 8), ("applied", 3), ("blocked", 4), ("closed", 5)]),
    "deposit": Table([("active", 75), ("maturing", 8), ("renewed", 7), ("closed", 10)]),
    "consumer_loan": Table(
        [("active", 62), ("arrears", 12), ("repaid", 10), ("approved", 6), ("applied", 5), ("rejected", 5)]
    ),
    "salary_project": Table([("active", 93), ("closed", 7)]),
    "insurance": Table([("active", 80), ("lapsed", 10), ("applied", 5), ("closed", 5)]),
}
_PREFIX = {
    "current_account": "CA",
    "card": "CRD",
    "deposit": "DEP",
    "consumer_loan": "LN",
    "salary_project": "SAL",
    "insurance": "INS",
}


def _deposit_terms(w: World) -> tuple[dict[str, Any], float]:
    amount = float(w.rng.randrange(5_000, 500_001, 1_000))
    currency = w.rng.choice(("UAH", "UAH", "UAH", "UAH", "USD", "EUR"))
    term = w.rng.choice((3, 6, 12, 12, 18, 24))
    return {
        "rate": round(w.rng.uniform(11.0, 16.5), 1),
        "currency": currency,
        "amount": amount,
        "term_months": term,
    }, amount


def _loan_terms(w: World) -> tuple[dict[str, Any], float]:
    amount = float(w.rng.randrange(5_000, 300_001, 1_000))
    term = w.rng.choice((6, 12, 18, 24, 36, 48))
    return {
        "rate": round(w.rng.uniform(19.9, 45.0), 1),
        "currency": "UAH",
        "amount": amount,
        "term_months": term,
    }, amount


def _card_terms(w: World) -> tuple[dict[str, Any], float]:
    card_type = w.rng.choice(("debit", "debit", "debit", "credit", "credit", "virtual"))
    terms: dict[str, Any] = {
        "card_type": card_type,
        "currency": "UAH",
        "payment_system": w.rng.choice(("visa", "mastercard")),
    }
    limit = float(w.rng.randrange(5_000, 150_001, 5_000)) if card_type == "credit" else 0.0
    if limit:
        terms["credit_limit"] = limit
    return terms, limit


def _other_terms(w: World, product_class: str) -> tuple[dict[str, Any], float]:
    rng = w.rng
    if product_class == "salary_project":
        return {"employer": rng.choice(names.EMPLOYERS)}, 0.0
    if product_class == "insurance":
        premium = float(rng.randrange(600, 12_001, 100))
        return {
            "type": rng.choice(("life", "travel", "property", "health")),
            "premium": premium,
            "currency": "UAH",
        }, premium
    return {
        "currency": rng.choice(("UAH",) * 9 + ("USD",)),
        "tariff": rng.choice(("standard", "standard", "premium")),
    }, 0.0


def _terms(w: World, product_class: str) -> tuple[dict[str, Any], float]:
    """Contract terms of a product and its headline amount (deposit, loan, limit, salary, premium)."""
    if product_class == "deposit":
        return _deposit_terms(w)
    if product_class == "consumer_loan":
        return _loan_terms(w)
    if product_class == "card":
        return _card_terms(w)
    return _other_terms(w, product_class)


def _dates(
    w: World, product_class: str, state: str, term_days: int
) -> tuple[dt.date, dt.date | None, dt.date | None]:
    """(opened, closed, maturity) consistent with the state; many deposits mature inside the window."""
    rng, today, day = w.rng, w.today, dt.timedelta(days=1)
    if product_class == "deposit":
        if state == "closed":
            maturity = today - day * rng.randint(5, 900)
        elif state == "maturing":
            maturity = today + day * rng.randint(1, 14)
        else:
            maturity = today + day * rng.randint(1, term_days)
        opened = maturity - day * term_days * (rng.randint(2, 4) if state == "renewed" else 1)
        return opened, maturity if state == "closed" else None, maturity
    opened = today - day * rng.randint(20, 2_900)
    closed = (
        opened + day * rng.randint(1, (today - opened).days - 1) if state in ("closed", "repaid") else None
    )
    return opened, closed, None


def _product(w: World, person: Person, product_class: str) -> Record:
    """One product of a client, in a lifecycle state valid for its class."""
    state = _STATES[product_class].pick(w.rng)
    terms, amount = _terms(w, product_class)
    opened, closed, maturity = _dates(w, product_class, state, round(int(terms.get("term_months", 0)) * 30.4))
    number = f"{_PREFIX[product_class]}-{opened.year}-{w.next_seq():07d}"
    record: Record = {"product_class": product_class, "contract_number": number, "state": state}
    if state != "applied":
        record["opened_at"] = opened.isoformat()
    if closed is not None:
        record["closed_at"] = closed.isoformat()
    if maturity is not None:
        record["maturity_date"] = maturity.isoformat()
    record["terms"] = terms
    person.products.append(Product(product_class, number, state, amount, terms, maturity))
    return record


def new_products(w: World, person: Person) -> list[Record]:
    """A new client's products: each class by its share, and at least a current account."""
    products = [_product(w, person, c) for c, share in _PRODUCT_MIX if w.rng.random() < share]
    return products or [_product(w, person, "current_account")]
