"""the dispatch claim's index

`ix_outbox_claim` (status, channel, available_at) replaces `ix_outbox_pending` (status,
available_at). The dispatch worker polls for the due messages of the channels it serves; through
the old index it walked every queued message, those of channels without an adapter too, inside its
write transaction on SQLite, while the API's writers waited. Queries on the status alone use the
new index's first column as they used the old one's.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_claim", "outbox", ["status", "channel", "available_at"])
    op.drop_index("ix_outbox_pending", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_pending", "outbox", ["status", "available_at"])
    op.drop_index("ix_outbox_claim", table_name="outbox")
