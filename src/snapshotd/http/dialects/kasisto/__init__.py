"""Kasisto's Snapshot API under `/create_snap`."""

from snapshotd.http.dialects.kasisto.routes import render_error, router
from snapshotd.http.wire import Dialect

dialect = Dialect(routers=(router,), renderers={"/create_snap": render_error})
