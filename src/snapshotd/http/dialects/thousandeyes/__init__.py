"""ThousandEyes API v6 (`/v6`) and v7 (`/v7`): one product, each version with its own error
shape."""

from snapshotd.http.dialects.thousandeyes import dns_api, network, v6, v7
from snapshotd.http.dialects.thousandeyes.common import render_v7_error
from snapshotd.http.wire import Dialect

dialect = Dialect(
    routers=(v6.router, network.router, v7.router, dns_api.router),
    renderers={"/v6/": v6.render_error, "/v7/": render_v7_error},
)
