"""data subjects' export and erasure (issue 18, point 9)

- `erasure_requests`: an erasure asked by one user and carried out on another's approval (four
  eyes); at most one open request per customer.
- `erased_identifiers`: the keyed digests (HMAC, OMNICRM_PSEUDONYM_KEY) of an erased person's
  identifiers, so that a stale event or profile naming one is refused instead of re-creating them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omnicrm.store.types import Json, UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasure_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", UtcDateTime, nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("executed_at", UtcDateTime, nullable=True),
        sa.Column("summary", Json, nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_erasure_requests_customer_id_customers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_erasure_requests"),
    )
    op.create_index("ix_erasure_requests_customer", "erasure_requests", ["customer_id"])
    open_only = sa.text("status = 'requested'")
    op.create_index(
        "uq_erasure_requests_one_open",
        "erasure_requests",
        ["customer_id"],
        unique=True,
        sqlite_where=open_only,
        postgresql_where=open_only,
    )
    op.create_table(
        "erased_identifiers",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("erased_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["erasure_requests.id"], name="fk_erased_identifiers_request_id_erasure_requests"
        ),
        sa.PrimaryKeyConstraint("kind", "digest", name="pk_erased_identifiers"),
    )


def downgrade() -> None:
    op.drop_table("erased_identifiers")
    op.drop_index("uq_erasure_requests_one_open", table_name="erasure_requests")
    op.drop_index("ix_erasure_requests_customer", table_name="erasure_requests")
    op.drop_table("erasure_requests")
