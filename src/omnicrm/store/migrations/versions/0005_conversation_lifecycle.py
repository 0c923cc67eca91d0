"""conversations: the messages a wait answers to, step records, and a message lifecycle

- `scenario_instances.awaiting`: the idempotency keys of the messages and tasks the current wait
  follows; only a reaction to one of them moves the wait (issue 17, point 1).
- `decisions.step`: a step of a running conversation that was held, skipped or cancelled is stored
  as a decision about that step, with its rules (point 3); null for a first decision.
- `outbox.status_reason` / `status_at`: why and when a message left `queued`. Statuses are renamed
  to the lifecycle's words: `pending` -> `queued`, `cancelled` -> `withdrawn` (never left).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omnicrm.store.types import Json, UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scenario_instances") as batch:
        batch.add_column(sa.Column("awaiting", Json, nullable=True))
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("step", sa.String(64), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("status_reason", sa.String(300), nullable=True))
        batch.add_column(sa.Column("status_at", UtcDateTime, nullable=True))
    op.execute("UPDATE outbox SET status = 'queued' WHERE status = 'pending'")
    op.execute(
        "UPDATE outbox SET status = 'withdrawn', status_reason = 'goal reached' WHERE status = 'cancelled'"
    )


def downgrade() -> None:
    op.execute("UPDATE outbox SET status = 'pending' WHERE status = 'queued'")
    op.execute("UPDATE outbox SET status = 'cancelled' WHERE status = 'withdrawn'")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("status_at")
        batch.drop_column("status_reason")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("step")
    with op.batch_alter_table("scenario_instances") as batch:
        batch.drop_column("awaiting")
