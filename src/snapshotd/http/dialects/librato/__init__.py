"""Librato Metrics API v1 under `/v1`: metrics and measurements, spaces, charts and snapshots."""

from snapshotd.http.dialects.librato import common, reads, spaces
from snapshotd.http.wire import Dialect

dialect = Dialect(
    routers=(common.router, reads.router, spaces.router),
    renderers={"/v1/": common.render_error},
)
