"""channels and feedback (issue 19)

- `outbox.attempts`, `provider`, `provider_id`: what dispatch tried and who accepted the message.
- `feedback_inbox`: one row per provider event, so a replayed webhook changes nothing.
- `push_subscriptions`, `inbox_messages`, `tasks`: web push devices, the internet-bank inbox and
  call-centre tasks.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omnicrm.store.types import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("provider", sa.String(64), nullable=True))
        batch.add_column(sa.Column("provider_id", sa.String(200), nullable=True))
    op.create_index("ix_outbox_provider_id", "outbox", ["provider_id"])
    op.create_index("ix_outbox_backlog", "outbox", ["channel", "status", "provider", "attempts"])
    op.create_table(
        "feedback_inbox",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("message_key", sa.String(200), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id", name="pk_feedback_inbox"),
    )
    op.create_table(
        "sent_journal",
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("provider_id", sa.String(200), nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name="pk_sent_journal"),
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(1000), nullable=False),
        sa.Column("p256dh", sa.String(200), nullable=False),
        sa.Column("auth", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_push_subscriptions_customer_id_customers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_push_subscriptions"),
        sa.UniqueConstraint("customer_id", "device_id", name="uq_push_subscriptions_device"),
    )
    op.create_table(
        "inbox_messages",
        sa.Column("message_key", sa.String(200), nullable=False),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.Column("title", sa.String(300), nullable=True),
        sa.Column("body", sa.String(5000), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("read_at", UtcDateTime, nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_inbox_messages_customer_id_customers"
        ),
        sa.PrimaryKeyConstraint("message_key", name="pk_inbox_messages"),
    )
    op.create_index("ix_inbox_messages_customer", "inbox_messages", ["customer_id", "created_at"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("skill", sa.String(64), nullable=True),
        sa.Column("branch", sa.String(64), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", UtcDateTime, nullable=False),
        sa.Column("sla_at", UtcDateTime, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", UtcDateTime, nullable=True),
        sa.Column("closed_at", UtcDateTime, nullable=True),
        sa.Column("disposition", sa.String(32), nullable=True),
        sa.Column("note", sa.String(2000), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name="fk_tasks_customer_id_customers"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
    )
    op.create_index("ix_tasks_queue", "tasks", ["queue", "status", "priority", "due_at"])
    op.create_index("ix_tasks_customer", "tasks", ["customer_id"])


def downgrade() -> None:
    op.drop_table("tasks")
    op.drop_table("inbox_messages")
    op.drop_table("push_subscriptions")
    op.drop_table("sent_journal")
    op.drop_table("feedback_inbox")
    op.drop_index("ix_outbox_backlog", table_name="outbox")
    op.drop_index("ix_outbox_provider_id", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("provider_id")
        batch.drop_column("provider")
        batch.drop_column("attempts")
