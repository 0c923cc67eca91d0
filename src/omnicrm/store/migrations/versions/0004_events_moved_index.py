"""events: index only the rows a merge moved (origin_id <> customer_id)

The origin index serves one query, giving a profile's rows back on unmerge. An event is almost always
still owned by the profile it was recorded on; indexing every one of them cost a random B-tree
insert per event (about 13 % of batch ingestion on SQLite). The partial index holds only moved rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_MOVED = sa.text("origin_id <> customer_id")


def upgrade() -> None:
    op.drop_index("ix_events_origin", table_name="events")
    op.create_index("ix_events_moved", "events", ["origin_id"], sqlite_where=_MOVED, postgresql_where=_MOVED)


def downgrade() -> None:
    op.drop_index("ix_events_moved", table_name="events")
    op.create_index("ix_events_origin", "events", ["origin_id"])
