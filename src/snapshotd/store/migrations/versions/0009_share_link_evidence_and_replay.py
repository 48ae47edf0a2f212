"""share links may offer the evidence bundle and the archived page's replay

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ("evidence", "replay"):
        op.add_column(
            "shares",
            sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()),
        )


def downgrade() -> None:
    for name in ("replay", "evidence"):
        op.drop_column("shares", name)
