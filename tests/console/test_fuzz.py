"""Every console address, asked with bad query values and posted bad form fields: none may fail
with a server error, and every page keeps the console's own headers."""

from __future__ import annotations

import itertools

import pytest
from fastapi.testclient import TestClient

from snapshotd.http.console.capture import CHECKS, PAGE_FIELDS
from snapshotd.http.console.session import PAGE_HEADERS
from snapshotd.services import agents
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from tests.console.conftest import add_snapshot, org_id_of, png, sign_in
from tests.console.test_charts import space_with_a_chart
from tests.console.test_locations import create_location, upload
from tests.console.test_tests_pages import create_test

BAD = (
    "",
    " ",
    "-1",
    "0",
    "1.5",
    "abc",
    "2026-13-45",
    "nan",
    "1e309",
    "99999999999999999999999",
    "99999999999999999999",
    "9223372036854775808",
    "snp_unknown",
    "../../etc/passwd",
    "é\u202e",
    "%00",
    "x" * 5000,
    "9" * 5000,
)

MALFORMED = (
    ("multipart/form-data", b"csrf=x"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data\r\n\r\nx"),
    ("application/x-www-form-urlencoded", b"\xff\xfe=%%%&csrf"),
    ("application/json", b'{"csrf": ['),
)


@pytest.fixture
def world(
    client: TestClient, db: Database, blobs: FileBlobStore, admin_token: str
) -> dict[str, str]:
    org = org_id_of(db)
    location = str(create_location(client, admin_token)["id"])
    shots = [upload(client, admin_token, location, png(colour=(i, 0, 0))) for i in (10, 200)]
    space, chart = space_with_a_chart(client, admin_token)
    agent = agents.Agents(db).register("probe-host-1", location="Local", country_id="").id
    test = create_test(client, admin_token, agent)
    snapshot = add_snapshot(db, blobs, org)
    csrf = sign_in(client, admin_token)
    return {
        "snapshot": snapshot,
        "location": location,
        "a": shots[0],
        "b": shots[1],
        "space": str(space),
        "chart": str(chart),
        "test": str(test),
        "csrf": csrf,
    }


def pages(w: dict[str, str]) -> list[tuple[str, tuple[str, ...]]]:
    snap, loc = f"/console/snapshots/{w['snapshot']}", f"/console/locations/{w['location']}"
    space = f"/console/spaces/{w['space']}"
    grid = ("kind", "status", "location", "since", "until", "q", "archived", "before", "after")
    return [
        ("/console", (*grid, "done")),
        ("/console/snapshots", grid),
        (snap, ("done",)),
        (f"{snap}/status", ()),
        (f"{snap}/thumbnail", ()),
        (f"{snap}/files/image", ()),
        (f"{snap}/bundle", ()),
        (f"{snap}/record", ()),
        (f"{snap}/delete", ()),
        ("/console/new", ()),
        ("/console/locations", ("page",)),
        (loc, ("before", "done")),
        (f"{loc}/compare", ("a", "b", "mode")),
        (f"{loc}/compare/diff", ("a", "b")),
        ("/console/spaces", ("q", "page")),
        (space, ("window",)),
        (f"{space}/charts/{w['chart']}/image", ("window", "width", "height")),
        ("/console/tests", ()),
        (f"/console/tests/{w['test']}", ("before",)),
        ("/console/sign-in", ("next", "signed_out")),
    ]


def failure(client: TestClient, method: str, path: str, **sent: object) -> str | None:
    """What went wrong when asking, or None when the answer is neither a server error nor a
    console page without its headers."""
    try:
        answer = client.request(method, path, follow_redirects=False, **sent)  # type: ignore[arg-type]
    except Exception as error:  # noqa: BLE001 — the test reports every failure at once
        return f"{type(error).__name__}: {str(error)[:80]}"
    if answer.status_code >= 500:
        return f"HTTP {answer.status_code}"
    if answer.headers.get("content-type", "").startswith("text/html") and (
        answer.headers.get("content-security-policy") != PAGE_HEADERS["Content-Security-Policy"]
    ):
        return f"HTTP {answer.status_code} page without its Content-Security-Policy"
    return None


def test_no_query_value_makes_a_console_page_fail(
    client: TestClient, world: dict[str, str]
) -> None:
    failures = []
    for path, names in pages(world):
        for name, value in itertools.product(names, BAD):
            if found := failure(client, "GET", path, params={name: value}):
                failures.append((path, name, value[:20], found))
        for part, value in itertools.product(path.split("/")[2:], BAD):
            if "/" in value or not value.strip():
                continue
            bad = path.replace(part, value, 1)
            if found := failure(client, "GET", bad):
                failures.append((bad[:60], "path", value[:20], found))
    assert failures == []


def forms(w: dict[str, str]) -> list[tuple[str, tuple[str, ...]]]:
    snap, loc = f"/console/snapshots/{w['snapshot']}", f"/console/locations/{w['location']}"
    capture = ("url", "width", "height", "device", "selector", "format", "wait_until", "delay_ms")
    location = ("name", "description", "capture_url", "platform", "frequency", "webhook_url")
    return [
        (f"{snap}/shares", ("public", "expires_in", "evidence", "replay")),
        (f"{snap}/shares/shr_unknown/revoke", ()),
        (f"{snap}/archive", ("reason",)),
        (f"{snap}/unarchive", ()),
        (f"{snap}/hold", ("reason",)),
        (f"{snap}/release", ()),
        ("/console/new", (*capture, *PAGE_FIELDS, "scroll_lazy", "fail_on_status", *dict(CHECKS))),
        (loc, (*location, "change_threshold")),
        (f"{loc}/publish", ()),
        ("/console/sign-in", ("token", "email", "csrf", "next")),
        (f"{snap}/delete", ()),
    ]


def test_no_form_field_makes_a_console_form_fail(client: TestClient, world: dict[str, str]) -> None:
    failures = []
    for path, names in forms(world):
        for name, value in itertools.product(names or ("unknown",), BAD):
            sent = {"csrf": world["csrf"], name: value}
            if found := failure(client, "POST", path, data=sent):
                failures.append((path, name, value[:20], found))
        for kind, body in MALFORMED:
            if found := failure(client, "POST", path, content=body, headers={"content-type": kind}):
                failures.append((path, kind, body[:20], found))
        for part, value in itertools.product(path.split("/")[2:], BAD):
            if "/" in value or not value.strip():
                continue
            bad = path.replace(part, value, 1)
            if found := failure(client, "POST", bad, data={"csrf": world["csrf"]}):
                failures.append((bad[:60], "path", value[:20], found))
    assert failures == []


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/console/nowhere", "/console/snapshots/snp_x/nothing"])
def test_any_method_to_an_unknown_address_gets_the_console_404_page(
    client: TestClient, admin_token: str, method: str, path: str
) -> None:
    sign_in(client, admin_token)
    answer = client.request(method, path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
    assert "there is no console page at this address" in answer.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/console/snapshots/snp_x", "GET"),
        ("DELETE", "/console/new", "GET, POST"),
        ("GET", "/console/sign-out", "POST"),
    ],
)
def test_a_wrong_method_on_a_console_page_gets_the_console_405_page(
    client: TestClient, admin_token: str, method: str, path: str, allow: str
) -> None:
    sign_in(client, admin_token)
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allow
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
    assert "Method not allowed" in answer.text


def test_an_unexpected_failure_is_a_console_page(
    client: TestClient, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from snapshotd.services.console_reads import ConsoleReads

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    sign_in(client, admin_token)
    monkeypatch.setattr(ConsoleReads, "tests_of", broken)
    answer = client.get("/console/tests")
    assert answer.status_code == 500 and "an internal error occurred" in answer.text
    assert "a bug" not in answer.text
    assert answer.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
