"""What event and interaction episodes are built from: who they can happen to, and how they are seen.

An episode is a short story about one person (a funnel, a ticket opened then closed) that returns
its records in time order; the numbering and the final ordering happen in `generate`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from omnicrm.sim import names
from omnicrm.sim.world import Person, Product, Record, Table, World

Touch = tuple[str, str, dict[str, str]]  # (source, channel, identifiers) of a record


@dataclass
class Pools:
    """Indices of the people each kind of event can happen to."""

    digital: list[int]
    digital_prospects: list[int]
    callable_prospects: list[int]
    by_class: dict[str, list[int]]
    maturing: list[int]
    twins: list[tuple[int, int]]


Episode = Callable[[World, Pools], list[Record]]


def maturing_soon(w: World, product: Product) -> bool:
    end = w.today + dt.timedelta(days=w.days + 14)
    return product.maturity is not None and w.today < product.maturity <= end and product.state != "closed"


def build_pools(w: World) -> Pools:
    """Who can have web/app events, who can be called, who holds what; and the twin prospects."""
    people, rng = w.people, w.rng
    digital = [i for i, p in enumerate(people) if "cookie_id" in p.ids or "device_id" in p.ids]
    prospects = [i for i in digital if not people[i].client]
    by_class: dict[str, list[int]] = {"": list(w.clients)}
    for i in w.clients:
        for product_class in dict.fromkeys(x.product_class for x in people[i].products):
            by_class.setdefault(product_class, []).append(i)
    maturing = [
        i for i in by_class.get("deposit", []) if any(maturing_soon(w, x) for x in people[i].products)
    ]
    web_prospects = [i for i in prospects if "cookie_id" in people[i].ids]
    twins = [(i, rng.choice(w.clients)) for i in web_prospects if rng.random() < 0.01]
    callable_prospects = [i for i, p in enumerate(people) if not p.client and "phone" in p.ids]
    return Pools(digital, prospects, callable_prospects, by_class, maturing, twins)


def event(event_type: str, when: dt.datetime, touch: Touch, attributes: Record) -> Record:
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


def digital_touch(w: World, p: Pools, person: Person, twin_ok: bool = False) -> Touch:
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


def core_touch(person: Person) -> Touch:
    return "core_banking", "core", {"cbs_id": person.ids["cbs_id"]}


def someone(w: World, pool: list[int]) -> Person:
    return w.people[w.rng.choice(pool)]


# The product classes that have a tariff page; offers and upsells are drawn from them too.
TARIFF = Table([(c, 1.0) for c in names.TARIFF_PAGES])
