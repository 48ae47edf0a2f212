"""the capture cache (a key on snapshots, one capture in flight per key) and render keys

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

IN_FLIGHT = sa.text("status IN ('queued', 'working') AND cache_key IS NOT NULL")


def upgrade() -> None:
    op.add_column("organizations", sa.Column("cache_ttl", sa.Integer(), nullable=True))
    op.add_column("snapshots", sa.Column("cache_key", sa.String(length=64), nullable=True))
    op.create_index("ix_snapshots_cache", "snapshots", ["org_id", "cache_key"], unique=False)
    op.create_index(
        "ux_snapshots_cache_in_flight",
        "snapshots",
        ["org_id", "cache_key"],
        unique=True,
        sqlite_where=IN_FLIGHT,
        postgresql_where=IN_FLIGHT,
    )
    op.create_table(
        "render_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("rate_limit", sa.String(length=40), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("render_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_render_keys_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("render_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_render_keys_org_id"))
    op.drop_table("render_keys")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35 and later): the batch mode would copy and drop
    # these tables, and dropping one deletes the rows that refer to it (ON DELETE CASCADE).
    op.drop_index("ux_snapshots_cache_in_flight", table_name="snapshots")
    op.drop_index("ix_snapshots_cache", table_name="snapshots")
    op.drop_column("snapshots", "cache_key")
    op.drop_column("organizations", "cache_ttl")
