"""Ironclad Clickwrap's REST API v1.1 under `/v1.1`."""

from snapshotd.http.dialects.clickwrap.routes import render_error, router
from snapshotd.http.wire import Dialect

dialect = Dialect(routers=(router,), renderers={"/v1.1/": render_error})
