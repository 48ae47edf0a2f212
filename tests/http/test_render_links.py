"""Render links: a capture's picture through a signed URL, without a token, answered from the
capture cache on repeats; and the render keys that sign them. Real Chromium, a real page server
that counts the requests each capture makes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from urllib.parse import urlencode

import pytest
from fastapi import Request, Response
from fastapi.testclient import TestClient

from snapshotd.http.fast_render import FastRenderHit
from snapshotd.services.accounts import Accounts
from snapshotd.store.db import Database
from tests.pages import PageServer


def signed(key: dict[str, str], fmt: str = "png", **query: object) -> str:
    """A render link as the docs tell a user to build one."""
    text = urlencode({name: str(value) for name, value in query.items()})
    mac = hmac.new(key["secret"].encode(), text.encode(), hashlib.sha256).hexdigest()
    return f"/render/{key['id']}/{fmt}?{text}&signature={mac}"


def new_key(api: TestClient, auth: dict[str, str], **body: object) -> dict[str, str]:
    created = api.post("/api/v1/render-keys", json=body, headers=auth)
    assert created.status_code == 201, created.text
    return created.json()


def page_hits(pages: PageServer, path: str) -> int:
    return sum(1 for hit in pages.hits if hit[1] == path)


def test_render_keys_are_managed_by_admins_and_never_listed_with_their_secret(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    created = api.post("/api/v1/render-keys", json={"name": "blog"}, headers=auth)
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    assert body["secret"].startswith("rks_") and body["state"] == "live"
    second = new_key(api, auth, name="blog, next")
    listed = api.get("/api/v1/render-keys", headers=auth).json()["items"]
    assert [each["id"] for each in listed] == [body["id"], second["id"]]
    assert all("secret" not in each for each in listed)
    assert body["secret"] not in api.get("/api/v1/render-keys", headers=auth).text

    uploader = Accounts(db).create_token(org="acme", email="dev@acme.test", role="manager")
    for call in (
        lambda h: api.get("/api/v1/render-keys", headers=h),
        lambda h: api.post("/api/v1/render-keys", json={}, headers=h),
        lambda h: api.delete(f"/api/v1/render-keys/{body['id']}", headers=h),
    ):
        refused = call({"Authorization": f"Bearer {uploader}"})
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"

    other = Accounts(db).create_token(org="globex", email="ops@globex.test", role="admin")
    theirs = {"Authorization": f"Bearer {other}"}
    assert api.delete(f"/api/v1/render-keys/{body['id']}", headers=theirs).status_code == 404
    assert api.get("/api/v1/render-keys", headers=theirs).json()["items"] == []

    assert api.delete(f"/api/v1/render-keys/{body['id']}", headers=auth).status_code == 204
    states = {
        each["id"]: each["state"]
        for each in api.get("/api/v1/render-keys", headers=auth).json()["items"]
    }
    assert states == {body["id"]: "revoked", second["id"]: "live"}
    bad = api.post("/api/v1/render-keys", json={"rate_limit": "lots"}, headers=auth)
    assert bad.status_code == 400 and "rate limit" in bad.json()["detail"]


def test_a_signed_link_renders_once_then_answers_from_the_cache(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    key = new_key(live_api, auth)
    link = signed(key, url=pages.url + "/render-me", width=640, height=400)
    first = live_api.get(link)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/png"
    assert first.headers["x-cache"] == "miss"
    digest = hashlib.sha256(first.content).hexdigest()
    assert first.headers["etag"] == f'"{digest}"'
    max_age = int(first.headers["cache-control"].removeprefix("public, max-age="))
    assert 86_000 < max_age <= 86_400
    captured = page_hits(pages, "/render-me")
    assert captured == 1

    again = live_api.get(link)
    assert again.status_code == 200 and again.headers["x-cache"] == "hit"
    assert again.content == first.content
    assert page_hits(pages, "/render-me") == captured  # no browser this time

    unchanged = live_api.get(link, headers={"If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""

    # HEAD warms the cache for another size without sending the picture.
    other = signed(key, url=pages.url + "/render-me", width=500, height=300, cache_ttl=60)
    warmed = live_api.head(other)
    assert warmed.status_code == 200 and warmed.content == b""
    assert warmed.headers["x-cache"] == "miss"
    assert int(warmed.headers["content-length"]) > 0
    served = live_api.get(other)
    assert served.headers["x-cache"] == "hit"
    assert 0 < int(served.headers["cache-control"].removeprefix("public, max-age=")) <= 60
    assert page_hits(pages, "/render-me") == captured + 1

    forced = live_api.get(
        signed(key, url=pages.url + "/render-me", width=640, height=400, force="true")
    )
    assert forced.headers["x-cache"] == "miss"
    assert page_hits(pages, "/render-me") == captured + 2


@pytest.mark.parametrize(
    ("mangle", "status"),
    [
        (lambda link: link.partition("&signature=")[0], 403),
        (lambda link: link[:-4] + "beef", 403),
        (lambda link: link.replace("width=640", "width=641"), 403),
        (lambda link: link.replace("/render/rk_", "/render/rk_0"), 403),
    ],
)
def test_a_link_that_is_not_signed_as_sent_is_refused(
    api: TestClient, auth: dict[str, str], mangle: object, status: int
) -> None:
    key = new_key(api, auth)
    link = signed(key, url="https://example.org/", width=640)
    refused = api.get(mangle(link))  # type: ignore[operator]
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"


def test_refusals_after_the_signature_checks_out(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    key = new_key(api, auth)
    expired = api.get(signed(key, url="https://example.org/", expires=int(time.time()) - 5))
    assert expired.status_code == 410 and expired.json()["title"] == "Gone"
    for query in (
        {"url": "https://example.org/", "colour": "red"},
        {"url": "https://example.org/", "format": "jpeg"},
        {"url": "https://example.org/", "cache_ttl": "a week"},
        {"url": "https://example.org/", "cache_ttl": str(31 * 86400)},
        {"url": "https://example.org/", "expires": "tomorrow"},
        {"url": "http://127.0.0.2/secret"},  # outside the egress allowlist: denied
        {"url": "file:///etc/passwd"},
    ):
        refused = api.get(signed(key, **query))
        assert refused.status_code == 400, (query, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert api.get(f"/render/{key['id']}/gif?url=x&signature=00").status_code in (403, 422, 400)

    api.delete(f"/api/v1/render-keys/{key['id']}", headers=auth)
    revoked = api.get(signed(key, url="https://example.org/"))
    assert revoked.status_code == 403


def test_each_key_has_a_request_budget(api: TestClient, auth: dict[str, str]) -> None:
    key = new_key(api, auth, rate_limit="2/60")
    link = signed(key, url="https://example.org/", expires=1)  # 410 after the budget is taken
    assert [api.get(link).status_code for _ in range(3)] == [410, 410, 429]
    other = new_key(api, auth)
    assert api.get(signed(other, url="https://example.org/", expires=1)).status_code == 410


def test_a_hit_answered_in_front_of_the_framework_is_the_routes_answer(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    """The first hit after the key is forgotten goes through the route (it looks the key up);
    the next is answered by http/fast_render.py. Both say the same."""
    key = new_key(live_api, auth)
    link = signed(key, url=pages.url + "/render-fast", width=400, height=300)
    assert live_api.get(link).headers["x-cache"] == "miss"
    keys = live_api.app.state.services.render_keys  # type: ignore[attr-defined]
    keys.forget()
    by_route = live_api.get(link)
    by_middleware = live_api.get(link)
    assert by_route.status_code == by_middleware.status_code == 200
    assert by_route.content == by_middleware.content
    same = ("content-type", "content-length", "etag", "x-cache", "x-snapshot-id")
    assert {name: by_route.headers[name] for name in same} == {
        name: by_middleware.headers[name] for name in same
    }
    assert by_route.headers["x-cache"] == "hit"
    route_budget = by_route.headers["ratelimit"]
    assert by_middleware.headers["ratelimit"] != route_budget  # one more taken, once
    for answer in (by_route, by_middleware):
        assert answer.headers["cache-control"].startswith("public, max-age=")
    unchanged = live_api.get(link, headers={"If-None-Match": by_route.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.headers["x-cache"] == "hit"
    head = live_api.head(link)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == by_route.headers["content-length"]
    # A changed link is refused however warm the cache is.
    assert live_api.get(link.replace("width=400", "width=401")).status_code == 403

    # The middleware itself answers the hit, and leaves a miss and a bad signature to the route.
    services = live_api.app.state.services  # type: ignore[attr-defined]
    middleware = FastRenderHit(live_api.app, services)

    def answer(target: str) -> Response | None:
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": query.encode(),
            "headers": [],
            "client": ("127.0.0.1", 50000),
        }
        return asyncio.run(middleware._answer(Request(scope), key["id"], "png"))

    fast = answer(link)
    assert fast is not None and fast.body == by_route.content
    assert answer(signed(key, url=pages.url + "/render-fast", width=401, height=300)) is None
    assert answer(link[:-2] + "00") is None
