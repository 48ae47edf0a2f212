"""A render link's cache hit answered in front of the framework.

A render link sits in an `<img>` on pages that may be viewed thousands of times, so nearly all of
its requests are hits; FastAPI's routing and dependency solving, the ORM's three queries and the
thread hops of the full path cost several times the hit itself. This middleware answers the
common case on its own: a key this process remembers, a good signature, a link that is neither
expired nor forced, within its budgets, whose capture is in the cache (`CacheHits`, one query).
It uses the route's own pieces (`split_signed`, `link_request`, `picture_headers`,
`send_artifact`), so the answer is the route's answer.

Anything else goes on to the route, which answers in full, so every refusal keeps one home: an
unknown key, a bad signature (and the miss it counts), an expired link, bad options, a miss, a
running capture, any error. Nothing is taken from the key's budget unless this middleware
answers, so a request it passes on is counted once, by the route.
"""

from __future__ import annotations

import asyncio
import re
from functools import partial

from fastapi import Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from snapshotd.http.artifacts import send_artifact
from snapshotd.http.deps import Services, scope_address
from snapshotd.http.render import ROLES, link_request, picture_headers
from snapshotd.services.render_keys import split_signed

PATH = re.compile(r"/render/([^/]+)/(png|jpeg|webp|pdf)")


class FastRenderHit:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and not scope.get("root_path")
        ):
            match = PATH.fullmatch(scope["path"])
            if match is not None:
                response = await self._answer(Request(scope), match[1], match[2])
                if response is not None:
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, request: Request, key_id: str, format: str) -> Response | None:
        """The route's answer to a cache hit, or None to let the route answer."""
        services = self.services
        keys = services.render_keys
        _known, key = keys.remembered(key_id)
        if key is None:
            return None
        try:
            services.misses.check(scope_address(request.scope))
            signed, given = split_signed(request.scope["query_string"])
            keys.check(key, signed, given)
            options, ask = link_request(signed, format)
            services.snapshots.check_options(options)
            role = ROLES[format]
            picture = await services.cache_hits.find(key.org_id, options, ask, role)
            if picture is None:
                return None
            decision = keys.take(key)
            services.telemetry.capture_cache.labels("hit").inc()
            artifact = picture.artifact
            headers = picture_headers(picture.id, picture.max_age(), "hit", decision)
            answer = (
                request,
                picture.id,
                artifact,
                partial(services.snapshots.open_blob, artifact.sha256),
            )
            if services.settings.blobs:  # a bucket: reading the bytes waits on the network
                return await asyncio.to_thread(send_artifact, *answer, headers)
            return send_artifact(*answer, headers)
        except Exception:  # the route meets it again and answers it in full
            return None
