"""throttled logins (issue 18, point 4)

`login_throttle`: failed logins per user name and per client address, with the lock they earned and
when the record is forgotten (pruned), shared by every API worker and host on the database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omnicrm.store.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("locked_until", UtcDateTime, nullable=True),
        sa.Column("forget_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("kind", "value", name="pk_login_throttle"),
    )
    op.create_index("ix_login_throttle_forget_at", "login_throttle", ["forget_at"])


def downgrade() -> None:
    op.drop_index("ix_login_throttle_forget_at", table_name="login_throttle")
    op.drop_table("login_throttle")
