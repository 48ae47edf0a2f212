"""Librato Metrics API v1 under `/v1`: metrics and measurements, spaces, charts, snapshots and
annotations."""

from snapshotd.http.dialects.librato import annotations, common, reads, spaces
from snapshotd.http.wire import Dialect

dialect = Dialect(
    routers=(common.router, reads.router, spaces.router, annotations.router),
    renderers={"/v1/": common.render_error},
)
