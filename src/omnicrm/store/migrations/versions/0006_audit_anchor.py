"""audit chain keyed and anchored (issue 18, point 3)

The audit head gains the count, the last id and time, a seal (HMAC under OMNICRM_AUDIT_KEY) and a
verified checkpoint (see `omnicrm.store.audit`).

Entries written before this revision were chained with plain SHA-256. They are not re-chained:
re-hashing would erase the evidence of any edit made to them before today. Instead the boundary
is recorded (`legacy_last_id` = the newest of them): entries up to it are verified the old way, the
ones after it with the key. They are still protected: the head is sealed here, under the key, with
their count and the last of their hashes, and the first keyed entry covers that hash too, so an edit
to a legacy entry, even with its hashes recomputed, breaks the chain at the boundary. The key comes
from the engine bootstrap registered, else from the settings (production: OMNICRM_AUDIT_KEY).

Downgrading drops the new columns; entries appended since will not verify with the old code.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omnicrm.store.audit import seal_head
from omnicrm.store.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ZERO = sa.text("0")


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("last_id", sa.BigInteger(), nullable=False, server_default=_ZERO))
        batch.add_column(sa.Column("entry_count", sa.BigInteger(), nullable=False, server_default=_ZERO))
        batch.add_column(sa.Column("at", UtcDateTime, nullable=True))
        batch.add_column(sa.Column("legacy_last_id", sa.BigInteger(), nullable=False, server_default=_ZERO))
        batch.add_column(sa.Column("tampered_since", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
        batch.add_column(sa.Column("checked_id", sa.BigInteger(), nullable=False, server_default=_ZERO))
        batch.add_column(sa.Column("checked_count", sa.BigInteger(), nullable=False, server_default=_ZERO))
        batch.add_column(sa.Column("checked_hash", sa.String(64), nullable=False, server_default="0" * 64))
        batch.add_column(sa.Column("checked_at", UtcDateTime, nullable=True))
        batch.add_column(sa.Column("checked_mac", sa.String(64), nullable=True))
    op.execute(
        "UPDATE audit_head SET "
        "last_id = (SELECT COALESCE(MAX(id), 0) FROM audit_log), "
        "entry_count = (SELECT COUNT(*) FROM audit_log), "
        "legacy_last_id = (SELECT COALESCE(MAX(id), 0) FROM audit_log), "
        "at = (SELECT at FROM audit_log ORDER BY id DESC LIMIT 1) "
        "WHERE id = 1"
    )
    seal_head(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        for name in (
            "checked_mac",
            "checked_at",
            "checked_hash",
            "checked_count",
            "checked_id",
            "mac",
            "tampered_since",
            "legacy_last_id",
            "at",
            "entry_count",
            "last_id",
        ):
            batch.drop_column(name)
