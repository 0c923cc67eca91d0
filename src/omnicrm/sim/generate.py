"""A seeded synthetic data set structured like the paper's: customers, events and CRM interactions.

Everything comes from one `random.Random(seed)` and the given `start`, so the same arguments give
byte-identical files. Customers are generated first; events and interactions then only refer to
identifiers and contract numbers that the customers really have.
"""

from __future__ import annotations

import datetime as dt
import random
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

import orjson

from omnicrm.domain.pan import contains_pan
from omnicrm.domain.vocabulary import CHANNELS
from omnicrm.sim import names

Record = dict[str, Any]
T = TypeVar("T")
_DAY = 86_400
_BANK_CODE = "351999"
_KYIV = ZoneInfo("Europe/Kyiv")


@dataclass(frozen=True)
class DatasetSize:
    """How many customers, events and interactions to generate."""

    customers: int = 18_000
    events: int = 126_000
    interactions: int = 31_500


@dataclass(frozen=True)
class Dataset:
    """The generated records, as plain JSON-ready dicts in file order."""

    customers: list[Record]
    events: list[Record]
    interactions: list[Record]


class _Table(Generic[T]):
    """A weighted choice, drawn with one call of the generator."""

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.values = [value for value, _ in pairs]
        self.cum = list(accumulate(weight for _, weight in pairs))

    def pick(self, rng: random.Random) -> T:
        """One value, drawn by weight."""
        return self.values[bisect_left(self.cum, rng.random() * self.cum[-1])]


@dataclass(slots=True)
class _Product:
    product_class: str
    contract: str
    state: str
    amount: float
    terms: dict[str, Any]
    maturity: dt.date | None = None


@dataclass(slots=True)
class _Person:
    client: bool
    female: bool
    surname: tuple[str, str]
    branch: str | None
    language: str
    ids: dict[str, str] = field(default_factory=dict)
    products: list[_Product] = field(default_factory=list)


@dataclass
class _World:
    rng: random.Random
    start: dt.datetime
    days: int
    people: list[_Person] = field(default_factory=list)
    clients: list[int] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    seq: int = 0
    kyiv_offset: int = 0
    start_of_day: int = 0

    def __post_init__(self) -> None:
        offset = self.start.astimezone(_KYIV).utcoffset() or dt.timedelta()
        self.kyiv_offset = int(offset.total_seconds())
        self.start_of_day = self.start.hour * 3600 + self.start.minute * 60 + self.start.second

    @property
    def today(self) -> dt.date:
        return self.start.date()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def unique(self, kind: str, make: Callable[[], str]) -> str:
        """A value from `make` that was never drawn before for `kind` and holds no card number."""
        while True:
            value = make()
            key = f"{kind}:{value}"
            if key not in self.used and not contains_pan(value):
                self.used.add(key)
                return value

    def token(self, kind: str, prefix: str) -> str:
        return self.unique(kind, lambda: f"{prefix}{self.rng.getrandbits(64):016x}")

    def at(self, seconds: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=int(seconds))

    def moment(self, day: int | None = None) -> dt.datetime:
        """A random instant of the window (or of its `day`), busier in Kyiv's daytime than at night."""
        local = _HOURS.pick(self.rng) * 3600 + self.rng.randrange(3600)
        into_day = (local - self.kyiv_offset - self.start_of_day) % _DAY
        return self.at((self.rng.randrange(self.days) if day is None else day) * _DAY + into_day)


_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 7, 10, 12, 12, 12, 11, 11, 11, 11, 11, 11, 12, 12, 11, 9, 6, 3)
_HOURS = _Table(list(enumerate(_HOUR_WEIGHTS)))
_AGES = _Table(
    [((18, 24), 12), ((25, 34), 22), ((35, 44), 22), ((45, 54), 18), ((55, 64), 15), ((65, 80), 11)]
)
_BRANCHES = _Table(names.BRANCHES)
_DOMAINS = _Table(names.EMAIL_DOMAINS)
_TIERS = _Table([("mass", 70), ("affluent", 20), ("premium", 8), ("private", 2)])
_PREFERRED = _Table([("inapp", 30), ("sms", 25), ("email", 20), ("webpush", 10), ("callcentre", 15)])
_MARKETING = _Table([("granted", 55), ("withdrawn", 7), ("refused", 23), ("none", 15)])
_PRODUCT_MIX = (
    ("current_account", 0.95),
    ("card", 0.80),
    ("deposit", 0.30),
    ("consumer_loan", 0.20),
    ("salary_project", 0.25),
    ("insurance", 0.10),
)
_STATES: dict[str, _Table[str]] = {
    "current_account": _Table([("active", 88), ("dormant", 8), ("applied", 2), ("closed", 2)]),
    "card": _Table([("active", 80), ("issued", 8), ("applied", 3), ("blocked", 4), ("closed", 5)]),
    "deposit": _Table([("active", 75), ("maturing", 8), ("renewed", 7), ("closed", 10)]),
    "consumer_loan": _Table(
        [("active", 62), ("arrears", 12), ("repaid", 10), ("approved", 6), ("applied", 5), ("rejected", 5)]
    ),
    "salary_project": _Table([("active", 93), ("closed", 7)]),
    "insurance": _Table([("active", 80), ("lapsed", 10), ("applied", 5), ("closed", 5)]),
}
_PREFIX = {
    "current_account": "CA",
    "card": "CRD",
    "deposit": "DEP",
    "consumer_loan": "LN",
    "salary_project": "SAL",
    "insurance": "INS",
}


# ---------------------------------------------------------------------------------------- customers


def _phone(w: _World) -> str:
    """A unique Ukrainian mobile number, mostly in E.164 and sometimes as people type it."""
    e164 = w.unique(
        "phone", lambda: f"+380{w.rng.choice(names.MOBILE_CODES)}{w.rng.randrange(2_000_000, 10**7)}"
    )
    if w.rng.random() < 0.1:
        d = e164[4:]
        return f"0{d[:2]} {d[2:5]} {d[5:7]} {d[7:]}"
    return e164


def _email(w: _World, first: str, last: str, year: int) -> str:
    """A unique e-mail address made of the transliterated name."""
    f, s, yy = names.transliterate(first), names.transliterate(last), f"{year % 100:02d}"
    local = w.rng.choice((f"{f}.{s}", f"{f[0]}.{s}", f"{s}.{f}{yy}", f"{f}{s}{yy}", f"{f}_{s}", f"{s}{f[0]}"))
    domain = _DOMAINS.pick(w.rng)
    address, number = f"{local}@{domain}", 1
    while f"email:{address}" in w.used:
        number += 1
        address = f"{local}{number}@{domain}"
    w.used.add(f"email:{address}")
    return address


def _iban(w: _World) -> str:
    """A unique UA IBAN with correct ISO 13616 check digits."""

    def draw() -> str:
        bban = _BANK_CODE + "000002620" + f"{w.rng.randrange(10**9, 10**10)}"
        check = 98 - int(bban + "301000") % 97  # U=30, A=10, check digits 00
        return f"UA{check:02d}{bban}"

    return w.unique("account", draw)


def _birth(w: _World) -> dt.date:
    low, high = _AGES.pick(w.rng)
    days = w.rng.randint(int(low * 365.25) + 1, int((high + 1) * 365.25) - 1)
    return w.today - dt.timedelta(days=days)


def _new_person(w: _World, client: bool) -> tuple[_Person, Record]:
    """Names, birth date, language and household of a new customer."""
    rng = w.rng
    partner = w.people[rng.choice(w.clients)] if client and w.clients and rng.random() < 0.1 else None
    spouse = partner is not None and rng.random() < 0.7
    female = (not partner.female) if partner is not None and spouse else rng.random() < 0.53
    surname = partner.surname if partner is not None else rng.choice(names.SURNAMES)
    father = rng.choice(names.MALE_NAMES)
    branch = partner.branch if partner is not None else (_BRANCHES.pick(rng) if client else None)
    person = _Person(client, female, surname, branch, "uk" if rng.random() < 0.85 else "en")
    record: Record = {
        "status": "client" if client else "prospect",
        "first_name": rng.choice(names.FEMALE_NAMES) if female else rng.choice(names.MALE_NAMES)[0],
        "last_name": surname[1] if female else surname[0],
    }
    if client or rng.random() < 0.6:
        record["middle_name"] = father[2] if female else father[1]
    if client or rng.random() < 0.5:
        record["date_of_birth"] = _birth(w).isoformat()
    record["language"] = person.language
    abroad = client and rng.random() < 0.02
    record["timezone"] = rng.choice(("Europe/Warsaw", "Europe/Berlin")) if abroad else "Europe/Kyiv"
    if branch is not None:
        record["branch"] = branch
    if partner is not None:
        related = {"kind": "phone", "value": partner.ids["phone"]}
        record["relationships"] = [{"kind": "spouse" if spouse else "household", "related": related}]
    return person, record


def _identifiers(w: _World, person: _Person, record: Record) -> None:
    """The customer's identifiers: clients are known to every system, prospects only to the web/app."""
    rng, ids = w.rng, person.ids
    year = int(record.get("date_of_birth", "1990")[:4])
    if person.client:
        ids["cbs_id"] = w.unique("cbs_id", lambda: f"CBS{rng.randrange(10**7, 10**8)}")
        ids["crm_id"] = w.unique("crm_id", lambda: f"CRM-{rng.randrange(10**6, 10**7)}")
    if person.client or rng.random() < 0.55:
        ids["phone"] = _phone(w)
    if rng.random() < (0.8 if person.client else 0.45):
        ids["email"] = _email(w, record["first_name"], record["last_name"], year)
    if person.client or rng.random() < 0.3:
        ids["device_id"] = w.token("device_id", "dev-")
    if rng.random() < (0.75 if person.client else 0.7) or not ids:
        ids["cookie_id"] = w.token("cookie_id", "ck-")
    if person.client and rng.random() < 0.2:
        ids["messenger_id"] = w.unique("messenger_id", lambda: f"tg:{rng.randrange(10**8, 10**10)}")


def _deposit_terms(w: _World) -> tuple[dict[str, Any], float]:
    amount = float(w.rng.randrange(5_000, 500_001, 1_000))
    currency = w.rng.choice(("UAH", "UAH", "UAH", "UAH", "USD", "EUR"))
    term = w.rng.choice((3, 6, 12, 12, 18, 24))
    return {
        "rate": round(w.rng.uniform(11.0, 16.5), 1),
        "currency": currency,
        "amount": amount,
        "term_months": term,
    }, amount


def _loan_terms(w: _World) -> tuple[dict[str, Any], float]:
    amount = float(w.rng.randrange(5_000, 300_001, 1_000))
    term = w.rng.choice((6, 12, 18, 24, 36, 48))
    return {
        "rate": round(w.rng.uniform(19.9, 45.0), 1),
        "currency": "UAH",
        "amount": amount,
        "term_months": term,
    }, amount


def _card_terms(w: _World) -> tuple[dict[str, Any], float]:
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


def _other_terms(w: _World, product_class: str) -> tuple[dict[str, Any], float]:
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


def _terms(w: _World, product_class: str) -> tuple[dict[str, Any], float]:
    """Contract terms of a product and its headline amount (deposit, loan, limit, salary, premium)."""
    if product_class == "deposit":
        return _deposit_terms(w)
    if product_class == "consumer_loan":
        return _loan_terms(w)
    if product_class == "card":
        return _card_terms(w)
    return _other_terms(w, product_class)


def _dates(
    w: _World, product_class: str, state: str, term_days: int
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


def _product(w: _World, person: _Person, product_class: str) -> Record:
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
    person.products.append(_Product(product_class, number, state, amount, terms, maturity))
    return record


def _consents(w: _World, person: _Person, source: str) -> list[Record]:
    """Marketing decisions per channel (some withdrawn later), and a rare service opt-out."""
    rng, out = w.rng, []
    for channel in CHANNELS if person.client else ("email", "webpush"):
        fate = _MARKETING.pick(rng) if person.client or rng.random() < 0.4 else "none"
        if fate == "none":
            continue
        first = rng.randint(2, 1_500)
        out.append(_consent(w, channel, "marketing", fate != "refused", source, first))
        if fate == "withdrawn":
            out.append(
                _consent(
                    w,
                    channel,
                    "marketing",
                    False,
                    rng.choice(("mobile_app", "web")),
                    rng.randint(1, first - 1),
                )
            )
    if person.client and rng.random() < 0.02:
        out.append(
            _consent(w, rng.choice(("sms", "email")), "service", False, "mobile_app", rng.randint(1, 400))
        )
    return out


def _consent(w: _World, channel: str, purpose: str, granted: bool, source: str, days_before: int) -> Record:
    effective = w.at(-days_before * _DAY + w.rng.randrange(_DAY))
    return {
        "channel": channel,
        "purpose": purpose,
        "granted": granted,
        "legal_basis": "consent",
        "source": source,
        "effective_at": effective.isoformat(),
    }


def _segments(w: _World, person: _Person, record: Record) -> list[str]:
    born = record.get("date_of_birth")
    age = (w.today - dt.date.fromisoformat(born)).days // 365 if born else 35
    held = {p.product_class for p in person.products if p.state not in ("closed", "repaid", "rejected")}
    flags = (
        ("salary-client", "salary_project" in held),
        ("young-adult", age < 25),
        ("pensioner", age >= 60),
        ("digital-active", "device_id" in person.ids and w.rng.random() < 0.6),
        ("deposit-holder", "deposit" in held),
        ("borrower", "consumer_loan" in held),
    )
    return [label for label, on in flags if on]


def _preferences_and_constraints(w: _World, person: _Person, record: Record) -> None:
    rng = w.rng
    if person.client or rng.random() < 0.5:
        prefs: Record = {"preferred_channel": _PREFERRED.pick(rng), "language": person.language}
        if rng.random() < 0.4:
            prefs["contact_window_start"] = rng.choice(("08:00:00", "09:00:00", "10:00:00"))
            prefs["contact_window_end"] = rng.choice(("18:00:00", "20:00:00", "21:00:00"))
        record["preferences"] = prefs
    constraints: Record = {}
    for flag, share in (("do_not_contact", 0.01), ("vulnerable", 0.005), ("fraud_case_open", 0.002)):
        if rng.random() < share:
            constraints[flag] = True
    if rng.random() < 0.02:
        constraints["channel_blacklist"] = [rng.choice(CHANNELS)]
    if constraints:
        record["constraints"] = constraints


def _customer(w: _World, client: bool) -> Record:
    """One complete CustomerIn record; the person is remembered for events and interactions."""
    rng = w.rng
    person, record = _new_person(w, client)
    _identifiers(w, person, record)
    if client:
        tier = _TIERS.pick(rng)
        record["value_tier"] = tier
        if tier in ("premium", "private"):
            record["relationship_manager"] = rng.choice(names.RELATIONSHIP_MANAGERS)
        products = [_product(w, person, c) for c, share in _PRODUCT_MIX if rng.random() < share]
        record["products"] = products or [_product(w, person, "current_account")]
        if any(p.product_class == "current_account" and p.state != "closed" for p in person.products):
            person.ids["account"] = _iban(w)
    record["identifiers"] = [{"kind": kind, "value": value} for kind, value in person.ids.items()]
    record["segments"] = _segments(w, person, record)
    _preferences_and_constraints(w, person, record)
    consents = _consents(w, person, rng.choice(("mobile_app", "branch", "web")) if client else "web")
    if consents:
        record["consents"] = consents
    w.people.append(person)
    if client:
        w.clients.append(len(w.people) - 1)
    return record


# ---------------------------------------------------------------------------------------- events

Touch = tuple[str, str, dict[str, str]]
Episode = Callable[[_World, "_Pools"], list[Record]]


@dataclass
class _Pools:
    """Indices of the people each kind of event can happen to."""

    digital: list[int]
    digital_prospects: list[int]
    callable_prospects: list[int]
    by_class: dict[str, list[int]]
    maturing: list[int]
    twins: list[tuple[int, int]]


def _maturing_soon(w: _World, product: _Product) -> bool:
    end = w.today + dt.timedelta(days=w.days + 14)
    return product.maturity is not None and w.today < product.maturity <= end and product.state != "closed"


def _pools(w: _World) -> _Pools:
    """Who can have web/app events, who can be called, who holds what; and the twin prospects."""
    people, rng = w.people, w.rng
    digital = [i for i, p in enumerate(people) if "cookie_id" in p.ids or "device_id" in p.ids]
    prospects = [i for i in digital if not people[i].client]
    by_class: dict[str, list[int]] = {"": list(w.clients)}
    for i in w.clients:
        for product_class in dict.fromkeys(x.product_class for x in people[i].products):
            by_class.setdefault(product_class, []).append(i)
    maturing = [
        i for i in by_class.get("deposit", []) if any(_maturing_soon(w, x) for x in people[i].products)
    ]
    web_prospects = [i for i in prospects if "cookie_id" in people[i].ids]
    twins = [(i, rng.choice(w.clients)) for i in web_prospects if rng.random() < 0.01]
    callable_prospects = [i for i, p in enumerate(people) if not p.client and "phone" in p.ids]
    return _Pools(digital, prospects, callable_prospects, by_class, maturing, twins)


def _ev(event_type: str, when: dt.datetime, touch: Touch, attributes: Record) -> Record:
    source, channel, ids = touch
    return {
        "event_id": "",
        "type": event_type,
        "occurred_at": when,
        "source": source,
        "channel": channel,
        "identifiers": dict(ids),
        "attributes": attributes,
    }


def _touch(w: _World, p: _Pools, person: _Person, twin_ok: bool = False) -> Touch:
    """App events carry the device, web events the cookie; a few web events reveal a prospect's twin."""
    ids = person.ids
    if "device_id" in ids and ("cookie_id" not in ids or w.rng.random() < 0.6):
        return "mobile_app", "mobile", {"device_id": ids["device_id"]}
    if twin_ok and p.twins and w.rng.random() < 0.007:
        prospect, client = w.rng.choice(p.twins)
        return (
            "web",
            "web",
            {"cookie_id": w.people[prospect].ids["cookie_id"], "phone": w.people[client].ids["phone"]},
        )
    return "web", "web", {"cookie_id": ids["cookie_id"]}


def _core(person: _Person) -> Touch:
    return "core_banking", "core", {"cbs_id": person.ids["cbs_id"]}


def _someone(w: _World, pool: list[int]) -> _Person:
    return w.people[w.rng.choice(pool)]


_TARIFF = _Table([(c, 1.0) for c in names.TARIFF_PAGES])
_APPLY = _Table(
    [("card", 30), ("consumer_loan", 30), ("deposit", 20), ("current_account", 12), ("insurance", 8)]
)
_AUTH = _Table([("password", 45), ("otp", 35), ("biometric", 20)])
_REGISTRATION = _Table([("success", 45), ("failed", 20), ("abandoned", 35)])
_REACTIONS = _Table(
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


def _tariff_visit(w: _World, p: _Pools) -> list[Record]:
    person = _someone(w, p.digital)
    product_class = _TARIFF.pick(w.rng)
    page = f"/{person.language}/{names.TARIFF_PAGES[product_class]}/{w.rng.choice(names.TARIFF_VARIANTS)}"
    touch = _touch(w, p, person, twin_ok=True)
    return [_ev("tariff_page.visited", w.moment(), touch, {"product_class": product_class, "page": page})]


def _funnel(w: _World, p: _Pools) -> list[Record]:
    """started -> some steps -> completed, abandoned or still open, all under one application_id."""
    rng, person = w.rng, _someone(w, p.digital)
    at_branch = person.client and rng.random() < 0.06
    touch = (
        ("branch", "branch", {"cbs_id": person.ids["cbs_id"]}) if at_branch else _touch(w, p, person, True)
    )
    product_class = _APPLY.pick(rng)
    steps = names.APPLICATION_STEPS[product_class]
    base: Record = {"product_class": product_class, "application_id": f"app-{w.next_seq():08d}"}
    when = w.moment()
    started = dict(base)
    if product_class in ("consumer_loan", "deposit"):
        started["amount"] = float(rng.randrange(5_000, 300_001, 1_000))
    out = [_ev("application.started", when, touch, started)]
    done = len(steps) if rng.random() < 0.28 else rng.choices(range(len(steps)), _STEPS_DONE[: len(steps)])[0]
    for index in range(done):
        when += dt.timedelta(seconds=rng.randint(40, 900))
        attrs = {**base, "step": steps[index], "step_index": index + 1}
        out.append(_ev("application.step_completed", when, touch, attrs))
    if done == len(steps) and rng.random() < 0.9:
        out.append(
            _ev("application.completed", when + dt.timedelta(seconds=rng.randint(20, 600)), touch, base)
        )
    elif done < len(steps) and rng.random() < 0.8:
        attrs = {**base, "last_step": steps[done]}
        out.append(
            _ev("application.abandoned", when + dt.timedelta(minutes=rng.randint(30, 90)), touch, attrs)
        )
    return out


def _calculator(w: _World, p: _Pools) -> list[Record]:
    person = _someone(w, p.digital)
    attrs = {
        "amount": float(w.rng.randrange(5_000, 300_001, 1_000)),
        "term_months": w.rng.choice((6, 12, 24, 36, 60)),
    }
    return [_ev("loan.calculator.used", w.moment(), _touch(w, p, person, twin_ok=True), attrs)]


def _auth_failed(w: _World, p: _Pools) -> list[Record]:
    person = _someone(w, w.clients)
    method = _AUTH.pick(w.rng)
    attrs = {"method": method, "reason": w.rng.choice(names.AUTH_REASONS[method])}
    return [_ev("auth.failed", w.moment(), _touch(w, p, person), attrs)]


def _registration(w: _World, p: _Pools) -> list[Record]:
    pool = p.digital_prospects if p.digital_prospects and w.rng.random() < 0.85 else p.digital
    person = _someone(w, pool)
    outcome = _REGISTRATION.pick(w.rng)
    attrs = {"outcome": outcome}
    if outcome != "success":
        attrs["step"] = w.rng.choice(names.REGISTRATION_STEPS)
    return [_ev("registration.attempted", w.moment(), _touch(w, p, person), attrs)]


def _card_activation(w: _World, p: _Pools) -> list[Record]:
    """One to three steps of activating the client's own card in the app."""
    rng, pool = w.rng, p.by_class.get("card")
    if not pool:
        return []
    person = _someone(w, pool)
    cards = [x for x in person.products if x.product_class == "card"]
    card = rng.choice([x for x in cards if x.state == "issued"] or cards)
    touch = ("mobile_app", "mobile", {"device_id": person.ids["device_id"]})
    when, count, out = w.moment(), rng.randint(1, 3), []
    for index, step in enumerate(names.CARD_ACTIVATION_STEPS[:count]):
        failed = index == count - 1 and rng.random() < 0.15
        attrs = {"contract_number": card.contract, "step": step, "outcome": "failed" if failed else "success"}
        out.append(_ev("card.activation.step", when + dt.timedelta(seconds=40 * index), touch, attrs))
    return out


def _reaction(w: _World, p: _Pools) -> list[Record]:
    person = _someone(w, p.digital)
    touch, message_id, when = _touch(w, p, person), w.token("message", "msg-"), w.moment()
    out = []
    for index, reaction in enumerate(_REACTIONS.pick(w.rng)):
        at = when + dt.timedelta(minutes=index * w.rng.randint(1, 240))
        out.append(_ev("message.reaction", at, touch, {"message_id": message_id, "reaction": reaction}))
    return out


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


def _operational(spec: tuple[str, str, tuple[str, ...], float], w: _World, p: _Pools) -> list[Record]:
    """A core-banking event about one of the client's own products of the right class."""
    event_type, product_class, prefer, _ = spec
    maturing = event_type == "deposit.maturing"
    pool = p.maturing if maturing and p.maturing else p.by_class.get(product_class)
    if not pool:
        return []
    person = _someone(w, pool)
    products = [x for x in person.products if not product_class or x.product_class == product_class]
    preferred = [x for x in products if (_maturing_soon(w, x) if maturing else x.state in prefer)]
    product = w.rng.choice(preferred or products)
    when = _before_maturity(w, product) if maturing else w.moment()
    return [_ev(event_type, when, _core(person), _operational_attributes(w, event_type, product))]


def _before_maturity(w: _World, product: _Product) -> dt.datetime:
    maturity = product.maturity or w.today
    offset = min(max((maturity - w.today).days - w.rng.randint(3, 14), 0), w.days - 1)
    return w.moment(offset)


def _operational_attributes(w: _World, event_type: str, x: _Product) -> Record:
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


_EVENT_EPISODES: _Table[Episode] = _Table(
    [
        (_tariff_visit, 25),
        (_funnel, 40 / 3.3),
        (_calculator, 8),
        (_auth_failed, 5),
        (_registration, 4),
        (_card_activation, 4 / 2),
        (_reaction, 4 / 1.7),
        *((partial(_operational, spec), spec[3] * 10 / 9.4) for spec in _OPERATIONAL),
    ]
)


# ---------------------------------------------------------------------------------------- interactions

_INBOUND = _Table(
    [
        ("resolved", 60),
        ("callback_requested", 10),
        ("escalated", 8),
        ("offer_accepted", 3),
        ("offer_declined", 5),
    ]
)
_OUTBOUND = _Table(
    [
        ("no_answer", 30),
        ("offer_declined", 20),
        ("offer_accepted", 10),
        ("resolved", 20),
        ("callback_requested", 12),
        ("wrong_number", 3),
    ]
)
_CAMPAIGN = _Table(
    [("converted", 8), ("responded", 22), ("no_response", 45), ("declined", 20), ("opted_out", 5)]
)
_SEVERITY = _Table([("low", 50), ("medium", 35), ("high", 15)])


def _contact(w: _World, p: _Pools, prospect_share: float) -> _Person:
    """A client, or now and then a prospect whose phone the bank knows."""
    if p.callable_prospects and w.rng.random() < prospect_share:
        return _someone(w, p.callable_prospects)
    return _someone(w, w.clients)


def _crm(w: _World, person: _Person, source: str, channel: str = "callcentre") -> Touch:
    if person.client and w.rng.random() < 0.7:
        return source, channel, {"crm_id": person.ids["crm_id"]}
    return source, channel, {"phone": person.ids["phone"]}


def _operator(w: _World) -> str:
    return f"op-{w.rng.randint(1, 120):03d}"


def _call(w: _World, p: _Pools) -> list[Record]:
    rng, person = w.rng, _contact(w, p, 0.15)
    direction = "inbound" if rng.random() < 0.6 else "outbound"
    disposition = (_INBOUND if direction == "inbound" else _OUTBOUND).pick(rng)
    attrs = {
        "direction": direction,
        "disposition": disposition,
        "topic": rng.choice(names.CALL_TOPICS),
        "duration_s": rng.randint(0, 30)
        if disposition in ("no_answer", "wrong_number")
        else rng.randint(30, 1_500),
        "operator": _operator(w),
    }
    return [_ev("crm.call.completed", w.moment(), _crm(w, person, "call_centre"), attrs)]


def _ticket(w: _World, p: _Pools) -> list[Record]:
    rng, person = w.rng, _someone(w, w.clients)
    touch = _crm(w, person, "crm", "branch" if rng.random() < 0.2 else "callcentre")
    ticket_id, opened = f"TCK-{w.next_seq():07d}", w.moment()
    out = [
        _ev(
            "crm.ticket.opened",
            opened,
            touch,
            {"ticket_id": ticket_id, "topic": rng.choice(names.TICKET_TOPICS)},
        )
    ]
    closed = opened + dt.timedelta(minutes=rng.randint(30, 10 * 24 * 60))
    if rng.random() < 0.85 and closed < w.at(w.days * _DAY):
        attrs = {"ticket_id": ticket_id, "outcome": rng.choice(names.TICKET_OUTCOMES)}
        out.append(_ev("crm.ticket.closed", closed, touch, attrs))
    return out


def _complaint(w: _World, p: _Pools) -> list[Record]:
    """A complaint, resolved later for about two thirds of them."""
    rng, person = w.rng, _someone(w, w.clients)
    touch = _crm(w, person, "crm")
    complaint_id, registered = f"CMP-{w.next_seq():07d}", w.moment()
    attrs = {
        "complaint_id": complaint_id,
        "topic": rng.choice(names.COMPLAINT_TOPICS),
        "severity": _SEVERITY.pick(rng),
    }
    out = [_ev("crm.complaint.registered", registered, touch, attrs)]
    resolved = registered + dt.timedelta(hours=rng.randint(2, 20 * 24))
    if rng.random() < 0.78 and resolved < w.at(w.days * _DAY):
        attrs = {"complaint_id": complaint_id, "resolution": rng.choice(names.RESOLUTIONS)}
        out.append(_ev("crm.complaint.resolved", resolved, touch, attrs))
    return out


def _offer_declined(w: _World, p: _Pools) -> list[Record]:
    rng, person = w.rng, _contact(w, p, 0.2)
    attrs = {
        "product_class": _TARIFF.pick(rng),
        "reason": rng.choice(names.DECLINE_REASONS),
        "campaign_id": rng.choice(names.CAMPAIGNS),
    }
    return [_ev("crm.offer.declined", w.moment(), _crm(w, person, "crm"), attrs)]


def _upsell(w: _World, p: _Pools) -> list[Record]:
    rng, person = w.rng, _someone(w, w.clients)
    touch = _crm(w, person, "branch", "branch") if rng.random() < 0.4 else _crm(w, person, "call_centre")
    attrs = {"product_class": _TARIFF.pick(rng), "operator": _operator(w)}
    return [_ev("crm.upsell.succeeded", w.moment(), touch, attrs)]


def _campaign(w: _World, p: _Pools) -> list[Record]:
    person = _contact(w, p, 0.2)
    attrs = {"campaign_id": w.rng.choice(names.CAMPAIGNS), "outcome": _CAMPAIGN.pick(w.rng)}
    return [_ev("crm.campaign.outcome", w.moment(), _crm(w, person, "crm"), attrs)]


def _branch_visit(w: _World, p: _Pools) -> list[Record]:
    rng, person = w.rng, _contact(w, p, 0.05)
    attrs = {"branch": person.branch or _BRANCHES.pick(rng), "purpose": rng.choice(names.BRANCH_PURPOSES)}
    return [_ev("crm.branch.visit", w.moment(), _crm(w, person, "branch", "branch"), attrs)]


_INTERACTION_EPISODES: _Table[Episode] = _Table(
    [
        (_call, 45),
        (_ticket, 15 / 1.85),
        (_complaint, 3),
        (_offer_declined, 10),
        (_upsell, 5),
        (_campaign, 12),
        (_branch_visit, 10),
    ]
)


# ---------------------------------------------------------------------------------------- assembly


def _fill(w: _World, p: _Pools, episodes: _Table[Episode], total: int) -> list[Record]:
    """Draw episodes until there are `total` records; the last episode may be cut short."""
    out: list[Record] = []
    while len(out) < total:
        out.extend(episodes.pick(w.rng)(w, p))
    del out[total:]
    return out


def _finish(w: _World, records: list[Record], prefix: str, late_share: float) -> list[Record]:
    """Order records by arrival (a few arrive late), number them and render the timestamps."""
    keyed = []
    for index, record in enumerate(records):
        arrival: dt.datetime = record["occurred_at"]
        if late_share and w.rng.random() < late_share:
            arrival += dt.timedelta(minutes=w.rng.randint(5, 48 * 60))
        keyed.append((arrival, index, record))
    keyed.sort(key=lambda item: (item[0], item[1]))
    for number, (_, _, record) in enumerate(keyed, 1):
        record["event_id"] = f"{prefix}-{number:07d}"
        record["occurred_at"] = record["occurred_at"].isoformat()
    return [record for _, _, record in keyed]


def generate(
    *, seed: int = 42, size: DatasetSize = DatasetSize(), start: dt.datetime, days: int = 90
) -> Dataset:
    """Generate the data set; the same seed, size, start and days always give the same records."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    if days < 1 or min(size.customers, size.events, size.interactions) < 0:
        raise ValueError("days must be positive and sizes not negative")
    if size.customers < 1 and (size.events or size.interactions):
        raise ValueError("events and interactions need at least one customer")
    w = _World(random.Random(seed), start.astimezone(dt.UTC), days)
    customers = [_customer(w, index == 0 or w.rng.random() < 0.6) for index in range(size.customers)]
    pools = _pools(w)
    events = _finish(w, _fill(w, pools, _EVENT_EPISODES, size.events), "ev", 0.03)
    interactions = _finish(w, _fill(w, pools, _INTERACTION_EPISODES, size.interactions), "ix", 0.0)
    return Dataset(customers, events, interactions)


def write_dataset(dataset: Dataset, directory: Path) -> dict[str, Path]:
    """Write customers.jsonl, events.jsonl and interactions.jsonl (one JSON object a line)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, records in (
        ("customers", dataset.customers),
        ("events", dataset.events),
        ("interactions", dataset.interactions),
    ):
        path = directory / f"{name}.jsonl"
        path.write_bytes(
            b"".join(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in records)
        )
        paths[name] = path
    return paths
