"""audit chain keyed and anchored (issue 18, point 3)

Placeholder revision so that parallel work chains in a fixed order; it changes nothing yet.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:15:00
"""

from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
