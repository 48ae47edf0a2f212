"""synthetic tests store the settings a probe acts on under snapshotd's own names

Revision ID: 0007
Revises: 0006

Until now a test's config held ThousandEyes' wire names (`httpTimeLimit`, ...); the dialect now
translates them into `ProbeSettings` fields. Keys are renamed in place, so their order is kept;
settings the probe does not act on keep the names their dialect gave them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen here rather than imported: a migration must mean the same thing whatever the code becomes.
RENAMED = {
    "pageLoadTimeLimit": "page_load_time_limit",
    "httpTimeLimit": "http_time_limit",
    "followRedirects": "follow_redirects",
    "desiredStatusCode": "desired_status_code",
    "verifyCertificate": "verify_certificate",
    "requestMethod": "request_method",
    "postBody": "post_body",
    "userAgent": "user_agent",
}

tests = sa.table("synthetic_tests", sa.column("id", sa.Integer), sa.column("config", sa.JSON))


def _rename(names: dict[str, str]) -> None:
    bind = op.get_bind()
    for test_id, config in bind.execute(sa.select(tests.c.id, tests.c.config)).all():
        if not config or names.keys().isdisjoint(config):
            continue
        renamed = {names.get(key, key): value for key, value in config.items()}
        bind.execute(tests.update().where(tests.c.id == test_id).values(config=renamed))


def upgrade() -> None:
    _rename(RENAMED)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMED.items()})
