"""The OpenAPI document's error answers: each operation lists the statuses it answers, in its
surface's error shape, and no status it cannot answer."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def spec(api: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = api.get("/openapi.json").json()
    return document


def responses(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    answers: dict[str, Any] = spec["paths"][path][method]["responses"]
    return answers


@pytest.mark.parametrize(
    ("method", "path", "media_type", "shape"),
    [
        ("post", "/api/v1/snapshots", "application/problem+json", "Problem"),
        ("post", "/api/v1/users", "application/problem+json", "Problem"),
        ("post", "/create_snap", "application/json", "KasistoError"),
        ("post", "/v1.1/locations", "application/json", "ClickwrapError"),
        ("post", "/v1/spaces", "application/json", "LibratoError"),
        ("post", "/v6/snapshot.xml", "text/xml", "ThousandEyesV6Error"),
        ("post", "/v6/snapshot.json", "application/json", "ThousandEyesV6Error"),
        ("post", "/v7/tests/{test_type}", "application/problem+json", "ThousandEyesV7Error"),
    ],
)
def test_errors_are_documented_in_the_surfaces_shape(
    spec: dict[str, Any], method: str, path: str, media_type: str, shape: str
) -> None:
    answers = responses(spec, method, path)
    for status in ("400", "401", "413", "429", "503"):
        content = answers[status]["content"]
        assert list(content) == [media_type], (path, status)
        assert content[media_type]["schema"] == {"$ref": f"#/components/schemas/{shape}"}
    assert shape in spec["components"]["schemas"]


def test_validation_is_documented_as_400_never_fastapis_422(spec: dict[str, Any]) -> None:
    unprocessable = {
        (method, path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "422" in operation["responses"]
    }
    # Librato answers 422 for a space name already taken, or a link rel an event already has.
    assert unprocessable == {
        ("post", "/v1/spaces"),
        ("put", "/v1/spaces/{space_id}"),
        ("post", "/v1/annotations/{name}/{event_id}/links"),
    }
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_statuses_follow_what_the_route_does(spec: dict[str, Any]) -> None:
    listing = responses(spec, "get", "/api/v1/snapshots")
    assert "403" not in listing and "404" not in listing and "413" not in listing
    one = responses(spec, "get", "/api/v1/snapshots/{snapshot_id}")
    assert "404" in one and "403" not in one
    assert {"403", "404", "409"} <= set(
        responses(spec, "delete", "/api/v1/snapshots/{snapshot_id}")
    )
    assert "403" in responses(spec, "post", "/v1.1/locations")  # an inline `require("manage")`
    assert "403" not in responses(spec, "get", "/v1.1/locations")  # every role may view
    me = responses(spec, "get", "/api/v1/me")
    assert set(me) == {"200", "401", "429", "503"}


def test_signed_links_need_no_token_and_can_expire(spec: dict[str, Any]) -> None:
    for path in (
        "/v1.1/downloads/{snapshot_id}",
        "/v1/snapshots/{snapshot_id}/image.png",
        "/create_snap/files/{snapshot_id}",
    ):
        answers = responses(spec, "get", path)
        assert "401" not in answers and "410" in answers, path
        assert "image/png" in answers["200"]["content"], path
        assert "application/json" not in answers["200"]["content"], path


def test_retry_after_is_documented_with_429_and_503(spec: dict[str, Any]) -> None:
    answers = responses(spec, "post", "/api/v1/snapshots")
    for status in ("429", "503"):
        assert "Retry-After" in answers[status]["headers"]
