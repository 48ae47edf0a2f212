"""stored metric roll-ups (1, 5, 15 and 60 min), built from the measurements already stored

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The resolutions as they were when this revision was written; the code's list may grow later.
RESOLUTIONS = (60, 300, 900, 3600)


def upgrade() -> None:
    op.create_table(
        "metric_rollups",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["series_id"], ["metric_series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint(
            "series_id", "resolution", "time", postgresql_include=["count", "sum", "min", "max"]
        ),
        sqlite_with_rowid=False,
    )
    # Backfill: one INSERT ... SELECT per resolution, so the rows never leave the database and
    # the whole step commits with the table (or not at all).
    raw = sa.table(
        "measurements",
        *(sa.column(name) for name in ("series_id", "time", "count", "sum", "min", "max")),
    )
    rollups = sa.table(
        "metric_rollups",
        *(
            sa.column(name)
            for name in ("series_id", "resolution", "time", "count", "sum", "min", "max")
        ),
    )
    for resolution in RESOLUTIONS:
        bucket = raw.c.time - raw.c.time % resolution
        rolled = sa.select(
            raw.c.series_id,
            sa.literal(resolution, sa.Integer()),
            bucket,
            sa.func.sum(raw.c.count),
            sa.func.sum(raw.c.sum),
            sa.func.min(raw.c.min),
            sa.func.max(raw.c.max),
        ).group_by(raw.c.series_id, bucket)
        names = ["series_id", "resolution", "time", "count", "sum", "min", "max"]
        op.execute(rollups.insert().from_select(names, rolled))


def downgrade() -> None:
    op.drop_table("metric_rollups")
