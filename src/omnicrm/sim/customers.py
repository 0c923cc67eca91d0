"""Customer records: names, household, identifiers, value tier, consents, segments and preferences."""

from __future__ import annotations

import datetime as dt

from omnicrm.domain.vocabulary import CHANNELS
from omnicrm.sim import names
from omnicrm.sim.products import new_products
from omnicrm.sim.world import BRANCHES, DAY, Person, Record, Table, World

_BANK_CODE = "351999"
_AGES = Table(
    [((18, 24), 12), ((25, 34), 22), ((35, 44), 22), ((45, 54), 18), ((55, 64), 15), ((65, 80), 11)]
)
_DOMAINS = Table(names.EMAIL_DOMAINS)
_TIERS = Table([("mass", 70), ("affluent", 20), ("premium", 8), ("private", 2)])
_PREFERRED = Table([("inapp", 30), ("sms", 25), ("email", 20), ("webpush", 10), ("callcentre", 15)])
_MARKETING = Table([("granted", 55), ("withdrawn", 7), ("refused", 23), ("none", 15)])


def _phone(w: World) -> str:
    """A unique Ukrainian mobile number, mostly in E.164 and sometimes as people type it."""
    e164 = w.unique(
        "phone", lambda: f"+380{w.rng.choice(names.MOBILE_CODES)}{w.rng.randrange(2_000_000, 10**7)}"
    )
    if w.rng.random() < 0.1:
        d = e164[4:]
        return f"0{d[:2]} {d[2:5]} {d[5:7]} {d[7:]}"
    return e164


def _email(w: World, first: str, last: str, year: int) -> str:
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


def _iban(w: World) -> str:
    """A unique UA IBAN with correct ISO 13616 check digits."""

    def draw() -> str:
        bban = _BANK_CODE + "000002620" + f"{w.rng.randrange(10**9, 10**10)}"
        check = 98 - int(bban + "301000") % 97  # U=30, A=10, check digits 00
        return f"UA{check:02d}{bban}"

    return w.unique("account", draw)


def _birth(w: World) -> dt.date:
    low, high = _AGES.pick(w.rng)
    days = w.rng.randint(int(low * 365.25) + 1, int((high + 1) * 365.25) - 1)
    return w.today - dt.timedelta(days=days)


def _new_person(w: World, client: bool) -> tuple[Person, Record]:
    """Names, birth date, language and household of a new customer."""
    rng = w.rng
    partner = w.people[rng.choice(w.clients)] if client and w.clients and rng.random() < 0.1 else None
    spouse = partner is not None and rng.random() < 0.7
    female = (not partner.female) if partner is not None and spouse else rng.random() < 0.53
    surname = partner.surname if partner is not None else rng.choice(names.SURNAMES)
    father = rng.choice(names.MALE_NAMES)
    branch = partner.branch if partner is not None else (BRANCHES.pick(rng) if client else None)
    person = Person(client, female, surname, branch, "uk" if rng.random() < 0.85 else "en")
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


def _identifiers(w: World, person: Person, record: Record) -> None:
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


def _consents(w: World, person: Person, source: str) -> list[Record]:
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


def _consent(w: World, channel: str, purpose: str, granted: bool, source: str, days_before: int) -> Record:
    effective = w.at(-days_before * DAY + w.rng.randrange(DAY))
    return {
        "channel": channel,
        "purpose": purpose,
        "granted": granted,
        "legal_basis": "consent",
        "source": source,
        "effective_at": effective.isoformat(),
    }


def _segments(w: World, person: Person, record: Record) -> list[str]:
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


def _preferences_and_constraints(w: World, person: Person, record: Record) -> None:
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


def new_customer(w: World, client: bool) -> Record:
    """One complete CustomerIn record; the person is remembered for events and interactions."""
    rng = w.rng
    person, record = _new_person(w, client)
    _identifiers(w, person, record)
    if client:
        tier = _TIERS.pick(rng)
        record["value_tier"] = tier
        if tier in ("premium", "private"):
            record["relationship_manager"] = rng.choice(names.RELATIONSHIP_MANAGERS)
        record["products"] = new_products(w, person)
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
