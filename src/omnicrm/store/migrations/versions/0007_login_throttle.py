"""throttled logins (issue 18, point 4)

Placeholder revision so that parallel work chains in a fixed order; it changes nothing yet.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:15:00
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
