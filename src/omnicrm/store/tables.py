"""The schema, as SQLAlchemy Core tables (the ORM is not used on hot paths).

Every per-customer child row keeps `customer_id` (who owns it now) and `origin_id` (the profile it
was first recorded on), so a merge is an UPDATE and an unmerge gives every row back exactly.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Time,
    UniqueConstraint,
)

from omnicrm.store.types import Json, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = String(32)
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PKs only

customers = Table(
    "customers",
    metadata,
    Column("id", Id, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("first_name", String(100)),
    Column("middle_name", String(100)),
    Column("last_name", String(100)),
    Column("date_of_birth", Date),
    Column("language", String(8)),
    Column("timezone", String(64)),
    Column("branch", String(64)),
    Column("relationship_manager", String(100)),
    Column("preferred_channel", String(16)),
    Column("contact_window_start", Time),
    Column("contact_window_end", Time),
    Column("do_not_contact", Boolean, nullable=False, default=False),
    Column("vulnerable", Boolean, nullable=False, default=False),
    Column("fraud_case_open", Boolean, nullable=False, default=False),
    Column("open_complaints", Integer, nullable=False, default=0),
    Column("channel_blacklist", Json, nullable=False, default=list),
    Column("value_tier", String(16)),
    Column("merged_into", Id, ForeignKey("customers.id")),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False, default=1),
)
Index("ix_customers_status_tier", customers.c.status, customers.c.value_tier)
Index("ix_customers_branch", customers.c.branch)
Index("ix_customers_merged_into", customers.c.merged_into)

# One row per (kind, value): lookup by any identifier is one indexed query.
identifiers = Table(
    "identifiers",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("value", String(160), primary_key=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("origin_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_identifiers_customer", identifiers.c.customer_id)
Index("ix_identifiers_origin", identifiers.c.origin_id)

segments = Table(
    "segments",
    metadata,
    Column("customer_id", Id, ForeignKey("customers.id"), primary_key=True),
    Column("segment", String(64), primary_key=True),
)
Index("ix_segments_segment", segments.c.segment)

consents = Table(
    "consents",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("origin_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("legal_basis", String(32), nullable=False),
    Column("source", String(32), nullable=False),
    Column("effective_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("recorded_by", String(64), nullable=False),
)
Index("ix_consents_customer", consents.c.customer_id, consents.c.effective_at)
Index("ix_consents_origin", consents.c.origin_id)

products = Table(
    "products",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("origin_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("product_class", String(32), nullable=False),
    Column("contract_number", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("opened_at", Date),
    Column("closed_at", Date),
    Column("maturity_date", Date),
    Column("terms", Json, nullable=False, default=dict),
    Column("state_changed_at", UtcDateTime, nullable=False),
    UniqueConstraint("product_class", "contract_number", name="uq_products_contract"),
)
Index("ix_products_customer", products.c.customer_id)
Index("ix_products_origin", products.c.origin_id)
Index("ix_products_class_state", products.c.product_class, products.c.state)

relationships = Table(
    "relationships",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("origin_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("related_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("note", String(200)),
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_relationships_customer", relationships.c.customer_id)
Index("ix_relationships_origin", relationships.c.origin_id)

# The timeline: behavioural, operational, reaction events and CRM interactions in one table.
events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False, unique=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("origin_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("type", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("channel", String(16)),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("attributes", Json, nullable=False),
)
Index("ix_events_timeline", events.c.customer_id, events.c.occurred_at, events.c.id)
# Only the events a merge moved (unmerge gives them back): indexing every event cost ~13 % of ingestion.
_MOVED = events.c.origin_id != events.c.customer_id
Index("ix_events_moved", events.c.origin_id, sqlite_where=_MOVED, postgresql_where=_MOVED)
Index("ix_events_type_time", events.c.type, events.c.occurred_at)

merges = Table(
    "merges",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("survivor_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("merged_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("snapshot", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("undone_at", UtcDateTime),
    Column("undone_by", String(64)),
)
Index("ix_merges_merged", merges.c.merged_id)

users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(200)),
    Column("role", String(16), nullable=False),
    Column("branch", String(64)),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", BigId, ForeignKey("users.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
)

# Append-only and hash-chained: each row's hash covers the previous row's hash.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(64)),
    Column("details", Json, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_action", audit_log.c.action, audit_log.c.at)
Index("ix_audit_target", audit_log.c.target)

# One row, locked to serialise appends to the audit chain: where the chain ends (MACed with the
# audit key, so editing it alone shows) and the last point a verification found intact (MACed too).
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_hash", String(64), nullable=False),
    Column("last_id", BigInteger, nullable=False, server_default="0"),
    Column("entry_count", BigInteger, nullable=False, server_default="0"),
    Column("at", UtcDateTime),  # when the last entry was appended
    Column("legacy_last_id", BigInteger, nullable=False, server_default="0"),  # unkeyed up to here
    Column("tampered_since", BigInteger),  # first entry appended onto a head that did not verify
    Column("mac", String(64)),
    Column("checked_id", BigInteger, nullable=False, server_default="0"),
    Column("checked_count", BigInteger, nullable=False, server_default="0"),
    Column("checked_hash", String(64), nullable=False, server_default="0" * 64),
    Column("checked_at", UtcDateTime),
    Column("checked_mac", String(64)),
)

# Every decision the engine made, with its reasons (rule outcomes, score terms, versions).
decisions = Table(
    "decisions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("scenario_id", String(64), nullable=False),
    Column("scenario_version", Integer, nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("action", String(16), nullable=False),
    Column("channel", String(16)),
    Column("due_at", UtcDateTime),
    Column("rules", Json, nullable=False),
    Column("score", Json, nullable=False),
    Column("total", Float, nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("arbitration", String(300), nullable=False),
    Column("instance_id", Id),
    Column("decided_at", UtcDateTime, nullable=False),
    Column("step", String(64)),  # a step held, skipped or cancelled; null: a first decision
)
Index("ix_decisions_customer", decisions.c.customer_id, decisions.c.decided_at)

# A running or finished conversation: one active instance per (customer, scenario), enforced here.
instances = Table(
    "scenario_instances",
    metadata,
    Column("id", Id, primary_key=True),  # a ULID made by the application, so a batch inserts in bulk
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("scenario_id", String(64), nullable=False),
    Column("scenario_version", Integer, nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # active | completed | cancelled
    Column("step", String(64), nullable=False),
    Column("due_at", UtcDateTime),  # when the current wait times out (the timer)
    Column("trigger_event_id", String(128), nullable=False),
    Column("last_reaction", String(16)),
    Column("outcome", String(64)),
    Column("goal_reached", Boolean, nullable=False, default=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Column("awaiting", Json),  # idempotency keys of the messages and tasks the current wait follows
)
Index(
    "uq_instances_one_active",
    instances.c.customer_id,
    instances.c.scenario_id,
    unique=True,
    sqlite_where=instances.c.status == "active",
    postgresql_where=instances.c.status == "active",
)
Index("ix_instances_due", instances.c.status, instances.c.due_at)
Index("ix_instances_customer", instances.c.customer_id)

# Transactional outbox: written with the state change that caused it; the key makes sends idempotent.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("instance_id", Id, ForeignKey("scenario_instances.id")),
    Column("kind", String(16), nullable=False),  # message | task
    Column("channel", String(16), nullable=False),
    Column("template", String(64)),
    Column("purpose", String(16), nullable=False),
    Column("payload", Json, nullable=False),
    Column("status", String(16), nullable=False),  # domain/lifecycle.py: queued | withdrawn | ...
    Column("available_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("status_reason", String(300)),  # why it left `queued` (withdrawn: which rule)
    Column("status_at", UtcDateTime),
    Column("attempts", Integer, nullable=False, server_default="0"),  # sends tried (dispatch)
    Column("provider", String(64)),  # the provider that accepted it (failover may pick another)
    Column("provider_id", String(200)),  # the provider's id, which its feedback refers to
)
# dispatch's claim: the due messages of the channels a worker serves, never those of the others
# (migration 0010; it replaced (status, available_at), which made every poll walk them all)
Index("ix_outbox_claim", outbox.c.status, outbox.c.channel, outbox.c.available_at)
Index("ix_outbox_provider_id", outbox.c.provider_id)
# /metrics: the backlog per channel and status, and sends and retries per provider, read from the index
Index("ix_outbox_backlog", outbox.c.channel, outbox.c.status, outbox.c.provider, outbox.c.attempts)
Index("ix_outbox_customer", outbox.c.customer_id, outbox.c.created_at)

# How far a consumer has read the events table (the database is the queue in embedded mode).
offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer", String(32), primary_key=True),
    Column("last_event_pk", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Every published version of every scenario template (a version is immutable once published), so
# instances started on an old version finish on it even after its file is gone.
scenario_versions = Table(
    "scenario_versions",
    metadata,
    Column("scenario_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("checksum", String(64), nullable=False),  # sha256 of the canonical spec
    Column("spec", Json, nullable=False),
    Column("source", String(300), nullable=False),
    Column("generation", Integer, nullable=False),  # the library generation that published it
    Column("published_by", String(64), nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
)

# One row per published library: the policy and message templates it runs with, and which
# scenario versions are current. Every process builds its library from the newest generation.
library_generations = Table(
    "library_generations",
    metadata,
    Column("generation", Integer, primary_key=True, autoincrement=False),
    Column("checksum", String(64), nullable=False),
    Column("policy", Json, nullable=False),
    Column("messages", Json, nullable=False),
    Column("current", Json, nullable=False),  # scenario id -> version
    Column("published_by", String(64), nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    Column("note", String(500), nullable=False),
)

# A campaign: a segment (a CEL condition over the profile) run through one scenario template.
# draft -> submitted -> approved (by someone else: maker-checker) -> running -> finished.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("scenario_id", String(64), nullable=False),
    Column("segment", String(2000), nullable=False),
    Column("starts_at", UtcDateTime),  # None: as soon as it is approved and launched
    Column("status", String(16), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("submitted_by", String(64)),
    Column("approved_by", String(64)),
    Column("dry_run", Json),  # the last dry run: audience size and suppressions by reason
    Column("audience", Integer),
    Column("processed", Integer, nullable=False, default=0),
    Column("error", String(500)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("launched_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
)
Index("ix_campaigns_status", campaigns.c.status)

# Failed logins per user name and per client address (issue 18, point 4), kept in the database so
# that every API worker and host sees one count. `value` is a bounded user name with any card
# number masked, or an address; a record is forgotten (pruned) at `forget_at`.
login_throttle = Table(
    "login_throttle",
    metadata,
    Column("kind", String(8), primary_key=True),  # "name" or "address"
    Column("value", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until", UtcDateTime),
    Column("forget_at", UtcDateTime, nullable=False),
)
Index("ix_login_throttle_forget_at", login_throttle.c.forget_at)

# Data subjects' rights: an erasure asked by one person and carried out on another's approval.
erasure_requests = Table(
    "erasure_requests",
    metadata,
    Column("id", Id, primary_key=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("status", String(16), nullable=False),  # requested | executed
    Column("requested_by", String(64), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("approved_by", String(64)),
    Column("executed_at", UtcDateTime),
    Column("summary", Json),  # rows erased per table: counts only, never a value
)
Index("ix_erasure_requests_customer", erasure_requests.c.customer_id)
Index(
    "uq_erasure_requests_one_open",
    erasure_requests.c.customer_id,
    unique=True,
    sqlite_where=erasure_requests.c.status == "requested",
    postgresql_where=erasure_requests.c.status == "requested",
)

# What is left of an erased identifier: its keyed digest (domain/privacy.py), so intake refuses it.
erased_identifiers = Table(
    "erased_identifiers",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("request_id", Id, ForeignKey("erasure_requests.id"), nullable=False),
    Column("erased_at", UtcDateTime, nullable=False),
)

# ------------------------------------------------------------ channels and feedback (issue 19)
# Inbox dedup of feedback: one row per provider event (webhook, tracked open/click, disposition), so
# a replayed webhook is acknowledged and changes nothing.
feedback_inbox = Table(
    "feedback_inbox",
    metadata,
    Column("source", String(32), primary_key=True),  # smtp | kannel | webpush | tracking | task ...
    Column("event_id", String(200), primary_key=True),  # the provider's own id of the event
    Column("message_key", String(200)),  # the outbox idempotency key it was bound to
    Column("status", String(32), nullable=False),  # domain/statuses.py
    Column("received_at", UtcDateTime, nullable=False),
)

# Every provider acceptance, written at once on a connection of its own (store/dispatch.Journal), so
# a worker killed before its batch commits does not send the batch's accepted messages again.
sent_journal = Table(
    "sent_journal",
    metadata,
    Column("idempotency_key", String(200), primary_key=True),
    Column("provider", String(64), nullable=False),
    Column("provider_id", String(200), nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
)

# Web push subscriptions, one per device; a 404/410 from the push service removes one.
push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("endpoint", String(1000), nullable=False),
    Column("p256dh", String(200), nullable=False),
    Column("auth", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("customer_id", "device_id", name="uq_push_subscriptions_device"),
)

# Internet-bank / mobile-app inbox: the rendered message, fetched by the client's apps.
inbox_messages = Table(
    "inbox_messages",
    metadata,
    Column("message_key", String(200), primary_key=True),  # the outbox idempotency key
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("title", String(300)),
    Column("body", String(5000), nullable=False),
    Column("language", String(8), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("read_at", UtcDateTime),
)
Index("ix_inbox_messages_customer", inbox_messages.c.customer_id, inbox_messages.c.created_at)

# Call-centre tasks (outbound call, callback): an outbox row of kind `task` once dispatched.
tasks = Table(
    "tasks",
    metadata,
    Column("id", String(200), primary_key=True),  # the outbox idempotency key
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # call | callback
    Column("queue", String(64), nullable=False),
    Column("skill", String(64)),
    Column("branch", String(64)),
    Column("priority", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # open | claimed | closed | withdrawn
    Column("due_at", UtcDateTime, nullable=False),
    Column("sla_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_at", UtcDateTime),
    Column("closed_at", UtcDateTime),
    Column("disposition", String(32)),
    Column("note", String(2000)),
)
Index("ix_tasks_queue", tasks.c.queue, tasks.c.status, tasks.c.priority, tasks.c.due_at)
Index("ix_tasks_customer", tasks.c.customer_id)

__all__ = [
    "api_tokens",
    "audit_head",
    "audit_log",
    "campaigns",
    "consents",
    "customers",
    "decisions",
    "erased_identifiers",
    "erasure_requests",
    "events",
    "feedback_inbox",
    "identifiers",
    "inbox_messages",
    "instances",
    "library_generations",
    "login_throttle",
    "merges",
    "metadata",
    "offsets",
    "outbox",
    "products",
    "push_subscriptions",
    "relationships",
    "scenario_versions",
    "segments",
    "sent_journal",
    "tasks",
    "users",
]
