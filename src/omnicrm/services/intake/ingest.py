"""Event intake: validate a batch, dedupe by event_id, resolve identities, write the timeline.

All-or-nothing: `prepare` finds every problem of every item before anything is written, and
`ingest` runs inside the caller's transaction, so a refused batch leaves no row behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from omnicrm.domain.catalogue import Catalogue, EventType, ProductEffect
from omnicrm.domain.errors import CardNumberRefused, Conflict, InvalidInput, ItemError
from omnicrm.domain.identifiers import InvalidIdentifier, normalise
from omnicrm.domain.pan import contains_pan, find_pan_paths
from omnicrm.domain.privacy import ErasedSubject
from omnicrm.domain.vocabulary import CLIENT_STATES
from omnicrm.services.contracts import EventIn
from omnicrm.services.intake import opt_out, reactions
from omnicrm.services.profiles import identity
from omnicrm.services.profiles.identity import merge_pair, new_customer_id
from omnicrm.store import erasure, profiles, timeline
from omnicrm.store.uow import UnitOfWork

Pair = tuple[str, str]
EVENT_KINDS = frozenset({"behavioural", "operational", "reaction"})
INTERACTION_KINDS = frozenset({"interaction"})
_COMPLAINT_DELTA = {"crm.complaint.registered": 1, "crm.complaint.resolved": -1}
# PostgreSQL's SQLSTATEs after which `store` runs a transaction again: a unique key another
# transaction wrote first, or a transaction undone to break a lock cycle or a serialisation conflict.
_UNIQUE_VIOLATION = "23505"
_TRANSIENT = {"40P01": "deadlock", "40001": "serialisation failure"}
_ATTEMPTS = 5
_HOLD_ATTEMPTS = 5
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One validated, normalised event, ready to be resolved and stored."""

    event_id: str
    type: str
    kind: str
    source: str
    channel: str | None
    occurred_at: datetime
    customer_id: str | None
    pairs: tuple[Pair, ...]
    attributes: dict[str, Any]
    effect: ProductEffect | None


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    customers_created: int = 0
    merges: int = 0
    outcomes: list[tuple[str, str, str | None]] = field(default_factory=list)  # (event_id, status, customer)


def prepare_one(
    raw: object,
    index: int,
    catalogue: Catalogue,
    kinds: frozenset[str],
    *,
    system: bool = False,
    pan_scanned: bool = False,
) -> Prepared | list[ItemError]:
    """Validate one raw item against the envelope, the catalogue and the identifier rules. Types
    the catalogue marks `system_only` are accepted only from omnicrm itself (`system`).
    `pan_scanned`: the caller already refused any card number in the item (the API's PAN guard
    scans every request body), so it is not scanned twice."""
    # One scan of the serialised item (JSON punctuation keeps fields apart); paths only on a hit.
    scan = not pan_scanned and contains_pan(orjson.dumps(raw, default=str).decode())
    pans = list(find_pan_paths(raw)) if scan else []
    if pans:
        return [
            ItemError(index, p, "looks like a payment card number; card numbers are never accepted")
            for p in pans
        ]
    try:
        event = EventIn.model_validate(raw)
    except ValidationError as exc:
        return [
            ItemError(index, ".".join(str(p) for p in e["loc"]) or "(item)", e["msg"])
            for e in exc.errors(include_url=False)
        ]
    event_type = catalogue.get(event.type)
    if event_type is None or event_type.kind not in kinds or (event_type.system_only and not system):
        return [ItemError(index, "type", _refused_type(event.type, event_type, catalogue, kinds))]
    errors: list[ItemError] = []
    attributes = event_type.clean(event.attributes, index)
    if isinstance(attributes, list):
        errors.extend(attributes)
    pairs: list[Pair] = []
    for kind, value in event.identifiers.items():
        try:
            pairs.append((kind, normalise(kind, value)))
        except InvalidIdentifier as exc:
            errors.append(ItemError(index, f"identifiers.{kind}", str(exc)))
    if not event.identifiers and event.customer_id is None:
        errors.append(ItemError(index, "identifiers", "give at least one identifier or a customer_id"))
    if errors or isinstance(attributes, list):
        return errors
    return Prepared(
        event.event_id,
        event.type,
        event_type.kind,
        event.source,
        event.channel,
        event.occurred_at,
        event.customer_id,
        tuple(pairs),
        attributes,
        event_type.product,
    )


def _refused_type(
    name: str, event_type: EventType | None, catalogue: Catalogue, kinds: frozenset[str]
) -> str:
    """Why an item of type `name` is refused: unknown here, or written only by omnicrm itself."""
    if event_type is None or event_type.kind not in kinds:
        accepted = ", ".join(catalogue.names(*kinds)[:8])
        return f"unknown {'/'.join(sorted(kinds))} type {name!r} (e.g. {accepted})"
    return f"{name!r} is written by omnicrm itself (campaign launches), not accepted from outside"


def prepare(
    raw_items: Sequence[object],
    catalogue: Catalogue,
    kinds: frozenset[str],
    *,
    system: bool = False,
    pan_scanned: bool = False,
) -> list[Prepared]:
    """Validate a whole batch; raises InvalidInput listing every bad item (index, field, reason)."""
    prepared: list[Prepared] = []
    errors: list[ItemError] = []
    for index, raw in enumerate(raw_items):
        result = prepare_one(raw, index, catalogue, kinds, system=system, pan_scanned=pan_scanned)
        if isinstance(result, Prepared):
            prepared.append(result)
        else:
            errors.extend(result)
    if errors:
        cls = CardNumberRefused if any("card number" in e.reason for e in errors) else InvalidInput
        bad = len({e.index for e in errors})
        raise cls(f"{bad} of {len(raw_items)} items are invalid; nothing was written", errors)
    return prepared


class _Resolver:
    """Resolves each event to a customer: known identifier, new prospect, or a merge of several.

    Every event of the batch is resolved up front, on what the look-ups read. On PostgreSQL the
    profiles they name are then held until the transaction ends (`identity.hold_batch`: FOR KEY
    SHARE, one statement), so that no merge moves them before the events are stored; a batch that
    will merge profiles first queues with the merges (`identity.queue_merge`) and locks the
    profiles it merges FOR UPDATE - the merges' own lock order: conversation counters, profiles,
    audit head. If a merge or an unmerge committed between the look-ups and the lock, the batch is
    resolved again on the live profiles held. On SQLite the writer's transaction is the only one
    (the write gate): nothing can move under it, and nothing more is asked of the database."""

    def __init__(self, conn: Connection, items: list[Prepared], now: datetime) -> None:
        self.conn, self.now = conn, now
        pairs = list(dict.fromkeys(p for item in items for p in item.pairs))
        owners = profiles.owners_of(conn, pairs)
        given = {item.customer_id for item in items if item.customer_id}
        roots = profiles.root_of(conn, given)
        _refuse_unknown(items, given, roots)
        self._resolve_all(items, owners, roots)
        if conn.dialect.name != "sqlite":
            self._hold(items, pairs, owners, roots)

    def _resolve_all(
        self, items: list[Prepared], owners: dict[Pair, tuple[str, str]], roots: dict[str, str]
    ) -> None:
        self.owners, self.roots = owners, roots
        self.alias: dict[str, str] = {}
        self.new_customers: list[dict[str, Any]] = []
        self.new_identifiers: dict[Pair, tuple[str, str]] = {}
        self.merges: list[tuple[str, str]] = []
        self._resolved = {id(item): self._resolve(item) for item in items}

    def _hold(
        self,
        items: list[Prepared],
        pairs: list[Pair],
        owners: dict[Pair, tuple[str, str]],
        roots: dict[str, str],
    ) -> None:
        """Hold the live profiles of the batch (see the class); resolve it again if they moved."""
        merging = {cid for pair in self.merges for cid in pair}
        if merging:
            identity.queue_merge(self.conn)
        held_owners = owners
        for _ in range(_HOLD_ATTEMPTS):
            wanted = (
                {cid for found in held_owners.values() for cid in found} | set(roots) | set(roots.values())
            )
            live = identity.hold_batch(self.conn, wanted, to_merge=merging)
            # An identifier belongs to the profile its origin ends in; if that is not where its owner
            # ends, an unmerge gave it back meanwhile: read the owners again (now held still).
            if all(live.get(origin) == live.get(cid) for cid, origin in held_owners.values()):
                break
            again = profiles.owners_of(self.conn, pairs)
            if again == held_owners:
                break
            held_owners = again
        else:
            raise Conflict("the profiles of these events kept being merged and unmerged; try again")
        held_owners = {pair: (live.get(cid, cid), origin) for pair, (cid, origin) in held_owners.items()}
        held_roots = {cid: live[cid] for cid in roots if cid in live}
        if held_owners != owners or held_roots != roots:
            _refuse_unknown(items, set(roots), held_roots)
            self._resolve_all(items, held_owners, held_roots)

    def resolve(self, item: Prepared) -> tuple[str, str]:
        """The (customer, origin) of an item of the batch given to the resolver."""
        return self._resolved[id(item)]

    def find(self, cid: str) -> str:
        while cid in self.alias:
            cid = self.alias[cid]
        return cid

    def _resolve(self, item: Prepared) -> tuple[str, str]:
        # `origin` is the profile the sender meant (first identifier's origin, else the id it gave):
        # what unmerge gives back. Identifiers and products learnt from this event share it.
        found: list[str] = []
        origin: str | None = None
        for pair in item.pairs:
            known = self.owners.get(pair) or self.new_identifiers.get(pair)
            if known is not None:
                found.append(known[0])
                origin = origin or known[1]
        if item.customer_id:
            found.append(self.roots[item.customer_id])
            origin = origin or item.customer_id
        distinct = list(dict.fromkeys(self.find(c) for c in found))
        if not distinct:
            cid = new_customer_id()
            self.new_customers.append(self._prospect(cid))
        else:
            cid = distinct[0]
            for other in distinct[1:]:
                self.merges.append((cid, other))
                self.alias[other] = cid
        origin = origin or cid
        for pair in item.pairs:
            if pair not in self.owners and pair not in self.new_identifiers:
                self.new_identifiers[pair] = (cid, origin)
        return cid, origin

    def _prospect(self, cid: str) -> dict[str, Any]:
        return {
            "id": cid,
            "status": "prospect",
            "do_not_contact": False,
            "vulnerable": False,
            "fraud_case_open": False,
            "open_complaints": 0,
            "channel_blacklist": [],
            "created_at": self.now,
            "updated_at": self.now,
            "version": 1,
        }

    def write(self, actor: str) -> dict[str, str]:
        """Insert new prospects and identifiers, run the merges; returns tentative id -> live id."""
        profiles.insert_customers(self.conn, self.new_customers)
        profiles.insert_identifiers(
            self.conn,
            [
                {
                    "kind": k,
                    "value": v,
                    "customer_id": self.find(cid),
                    "origin_id": origin,
                    "created_at": self.now,
                }
                for (k, v), (cid, origin) in self.new_identifiers.items()
            ],
        )
        live: dict[str, str] = {}
        for a, b in self.merges:
            a_live, b_live = live.get(a, a), live.get(b, b)
            while a_live in live and live[a_live] != a_live:
                a_live = live[a_live]
            while b_live in live and live[b_live] != b_live:
                b_live = live[b_live]
            if a_live == b_live:
                continue
            survivor = merge_pair(
                self.conn,
                a_live,
                b_live,
                reason="event identifiers point to one person",
                actor=actor,
                now=self.now,
            )
            loser = b_live if survivor == a_live else a_live
            live[loser] = survivor
        return live


def _refuse_unknown(items: list[Prepared], given: set[str], roots: dict[str, str]) -> None:
    missing = sorted(given - set(roots))
    if missing:
        errors = [
            ItemError(i, "customer_id", "no such customer")
            for i, it in enumerate(items)
            if it.customer_id in missing
        ]
        raise InvalidInput(f"unknown customer ids: {', '.join(missing[:5])}; nothing was written", errors)


def _final(cid: str, live: dict[str, str]) -> str:
    while cid in live:
        cid = live[cid]
    return cid


def ingest(conn: Connection, items: list[Prepared], *, actor: str, now: datetime) -> IngestResult:
    """Store a prepared batch inside the caller's transaction; replays are acknowledged, not stored."""
    result = IngestResult()
    known = timeline.known_event_ids(conn, [i.event_id for i in items])
    fresh: list[Prepared] = []
    seen: set[str] = set()
    for item in items:
        if item.event_id in known or item.event_id in seen:
            result.duplicates += 1
        else:
            seen.add(item.event_id)
            fresh.append(item)
    _refuse_erased(conn, items, fresh)
    resolver = _Resolver(conn, fresh, now)
    resolved = [resolver.resolve(item) for item in fresh]
    live = resolver.write(actor)
    result.customers_created = len(resolver.new_customers)
    result.merges = len(live)
    rows: list[dict[str, Any]] = []
    for item, (tentative, origin) in zip(fresh, resolved, strict=True):
        cid = _final(resolver.find(tentative), live)
        rows.append(
            {
                "event_id": item.event_id,
                "customer_id": cid,
                "origin_id": origin,
                "kind": item.kind,
                "type": item.type,
                "source": item.source,
                "channel": item.channel,
                "occurred_at": item.occurred_at,
                "attributes": item.attributes,
            }
        )
    timeline.insert_events(conn, rows, received_at=now)
    _apply_effects(conn, fresh, rows, now)
    opt_out.honour(conn, rows, actor=actor, now=now)  # STOP: in the transaction that stores it
    reactions.follow(conn, rows, now=now)  # the message shows the reaction the bank reported
    result.accepted = len(rows)
    owners: dict[str, str] = {**known, **{r["event_id"]: r["customer_id"] for r in rows}}
    pending = {r["event_id"] for r in rows}
    for item in items:
        status = "accepted" if item.event_id in pending else "duplicate"
        pending.discard(item.event_id)
        result.outcomes.append((item.event_id, status, owners.get(item.event_id)))
    return result


def _refuse_erased(conn: Connection, items: list[Prepared], fresh: list[Prepared]) -> None:
    """A new event naming an erased person (an identifier's tombstone, or their profile id) is
    refused, never stored: it would bring them back. A replay of one of their own old event ids is
    a duplicate, acknowledged before this and never stored either."""
    erased = erasure.erased_among(conn, (p for item in fresh for p in item.pairs))
    gone = erasure.erased_profiles(conn, (item.customer_id for item in fresh if item.customer_id))
    if not erased and not gone:
        return
    wanted = {id(item) for item in fresh}
    errors = [
        ItemError(index, field, "names a person whose data was erased")
        for index, item in enumerate(items)
        if id(item) in wanted
        for field in [f"identifiers.{k}" for k, v in item.pairs if (k, v) in erased]
        + (["customer_id"] if item.customer_id in gone else [])
    ]
    raise ErasedSubject(errors)


def store(
    uow: Callable[[], UnitOfWork], batches: Sequence[tuple[str, list[Prepared]]], *, now: datetime
) -> list[IngestResult]:
    """Ingest each (actor, prepared items) in one transaction, commit it, return one result each.

    On PostgreSQL two transactions that overlap (the group commits of two API processes, two
    `:batch` requests, a batch beside the writer) can both find an event_id - or a new identifier -
    not stored yet; the one that writes second then fails on the unique key once the first commits.
    It lost a race, nothing is wrong with it: the whole transaction is run again and now finds the
    other's rows, so the event is answered as a duplicate (never a second `accepted`, never a 500)
    and the identifier is known. Likewise a transaction PostgreSQL undid to break a lock cycle
    (deadlock_detected, 40P01: the intake locks its profiles in the merges' order, but a batch of
    several actors, or a product or complaint update, may still meet another writer the other way
    round) or could not serialise (40001) wrote nothing and is run again - at most `_ATTEMPTS` times
    in all, each repeat logged. SQLite queues writers at its write gate: none of this happens there.
    Any other error goes to the caller as it is."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with uow() as work:
                results = [ingest(work.conn, items, actor=actor, now=now) for actor, items in batches]
                work.commit()
            return results
        except Exception as exc:
            state = _sqlstate(exc)
            if attempt == _ATTEMPTS or (state != _UNIQUE_VIOLATION and state not in _TRANSIENT):
                raise
            if state in _TRANSIENT:
                log.warning(
                    "intake: the database undid a transaction of %d events (%s, SQLSTATE %s); "
                    "running it again (attempt %d of %d)",
                    sum(len(items) for _, items in batches),
                    _TRANSIENT[state],
                    state,
                    attempt + 1,
                    _ATTEMPTS,
                )
    raise AssertionError("unreachable")  # pragma: no cover


def _sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of an error (psycopg's arrives unwrapped from the COPY of the events,
    wrapped by SQLAlchemy from the other statements); None for any other error."""
    cause = getattr(exc, "orig", None) or exc
    state = getattr(cause, "sqlstate", None)
    return state if isinstance(state, str) else None


def _apply_effects(
    conn: Connection, items: list[Prepared], rows: list[dict[str, Any]], now: datetime
) -> None:
    """Product lifecycle moves and complaint counters; a late event never overrides a newer state."""
    targets = [
        (item, row["customer_id"], row["origin_id"], item.effect.target(item.attributes))
        for item, row in zip(items, rows, strict=True)
        if item.effect is not None
    ]
    complaints: dict[str, int] = {}
    for item, row in zip(items, rows, strict=True):
        if item.type in _COMPLAINT_DELTA:
            cid = row["customer_id"]
            complaints[cid] = complaints.get(cid, 0) + _COMPLAINT_DELTA[item.type]
    timeline.adjust_complaints(conn, complaints, now)
    if not targets:
        return
    existing = profiles.products_by_contract(conn, [(cls, num) for _, _, _, (cls, num, _) in targets])
    new_rows: dict[tuple[str, str], dict[str, Any]] = {}
    promoted: list[str] = []
    moved: dict[int, dict[str, Any]] = {}
    for item, cid, origin, (cls, number, state) in sorted(targets, key=lambda t: t[0].occurred_at):
        key = (cls, number)
        held = existing.get(key) or new_rows.get(key)
        if held is not None and held["customer_id"] != cid:
            continue  # the contract is another person's: the event is kept on the timeline only
        if held is None:
            new_rows[key] = {
                "customer_id": cid,
                "origin_id": origin,
                "product_class": cls,
                "contract_number": number,
                "state": state,
                "opened_at": item.occurred_at.date(),
                "terms": {},
                "maturity_date": _date_attr(item.attributes.get("maturity_date")),
                "state_changed_at": item.occurred_at,
            }
        elif item.occurred_at >= held["state_changed_at"]:
            held.update(state=state, state_changed_at=item.occurred_at)
            if "id" in held:
                moved[held["id"]] = held
        if state in CLIENT_STATES:
            promoted.append(cid)
    profiles.insert_products(conn, list(new_rows.values()))
    profiles.move_products(conn, [(pid, p["state"], p["state_changed_at"]) for pid, p in moved.items()])
    timeline.promote_to_client(conn, promoted, now)


def _date_attr(value: object) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None
