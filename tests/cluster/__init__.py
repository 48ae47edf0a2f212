"""Real processes for the scale tests: PostgreSQL, SeaweedFS, and snapshotd API and worker
processes composed into a cluster.

Everything here starts real programs in their own process groups and temp dirs, so a test can
kill, stop or restart any of them and cleanup still finds every process it started: each
snapshotd process carries a tag in its environment, inherited by Playwright's driver and
Chromium, and every process ever seen below it is remembered by pid and start time, so processes
orphaned by a killed worker are found afterwards even when they were reparented away.

`infra` holds the stores (PostgreSQL, S3), `services` snapshotd's processes and the cluster, and
`processes` what both read from /proc.
"""

from tests.cluster.infra import (
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    SHARED_BUCKET,
    Postgres,
    S3Location,
    SeaweedS3,
    fresh_database,
    shared_s3,
)
from tests.cluster.processes import (
    CHROMIUM_NAMES,
    TAG_VARIABLE,
    free_port,
    is_chromium,
    is_running,
    tagged_processes,
)
from tests.cluster.services import SNAPSHOTD, Cluster, Service

__all__ = [
    "CHROMIUM_NAMES",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "SHARED_BUCKET",
    "SNAPSHOTD",
    "TAG_VARIABLE",
    "Cluster",
    "Postgres",
    "S3Location",
    "SeaweedS3",
    "Service",
    "fresh_database",
    "free_port",
    "is_chromium",
    "is_running",
    "shared_s3",
    "tagged_processes",
]
