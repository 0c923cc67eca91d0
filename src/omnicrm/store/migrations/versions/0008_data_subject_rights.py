"""data subjects' export and erasure (issue 18, point 9)

Placeholder revision so that parallel work chains in a fixed order; it changes nothing yet.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:15:00
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
