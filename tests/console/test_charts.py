"""The console's chart pages through the ASGI app: spaces, charts drawn live from stored series
for a chosen window, and the chart snapshots of a space. Measurements, spaces, charts and
snapshots are made through the Librato API; a worker renders the snapshots."""

from __future__ import annotations

import io
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from snapshotd.services.accounts import Accounts
from snapshotd.store.db import Database
from snapshotd.worker import Worker
from tests.console.conftest import ADMIN, sign_in

PNG = b"\x89PNG\r\n\x1a\n"


def librato(client: TestClient, token: str, method: str, path: str, body: object) -> dict:
    answer = client.request(method, path, auth=(ADMIN, token), json=body)
    assert answer.status_code in (200, 201, 202), answer.text
    return answer.json() if answer.content else {}


def space_with_a_chart(client: TestClient, token: str, name: str = "Production") -> tuple[int, int]:
    now = int(time.time())
    points = [
        {"name": "cpu.load", "value": 10 + i % 7, "time": now - 3000 + 60 * i, "tags": {"host": h}}
        for i in range(50)
        for h in ("web-1", "web-2")
    ]
    librato(client, token, "POST", "/v1/measurements", {"measurements": points})
    space = librato(client, token, "POST", "/v1/spaces", {"name": name})
    chart = librato(
        client,
        token,
        "POST",
        f"/v1/spaces/{space['id']}/charts",
        {
            "name": "CPU load",
            "type": "line",
            "streams": [{"metric": "cpu.load", "group_function": "breakout"}],
        },
    )
    return int(space["id"]), int(chart["id"])


@pytest.fixture
def signed_in(client: TestClient, admin_token: str) -> str:
    return sign_in(client, admin_token)


def test_empty_states_say_what_to_do(client: TestClient, signed_in: str) -> None:
    page = client.get("/console/spaces")
    assert page.status_code == 200 and "No spaces yet" in page.text
    assert "POST /v1/measurements" in page.text and "POST /v1/spaces" in page.text
    assert 'aria-current="page">Charts' in page.text


def test_space_page_draws_each_chart_live_for_the_chosen_window(
    client: TestClient, admin_token: str, signed_in: str
) -> None:
    space_id, chart_id = space_with_a_chart(client, admin_token)
    listing = client.get("/console/spaces").text
    assert f'href="/console/spaces/{space_id}">Production</a>' in listing
    assert "Production" in client.get("/console/spaces?q=prod").text
    assert "No space" in client.get("/console/spaces?q=staging").text

    page = client.get(f"/console/spaces/{space_id}?window=6h")
    assert page.status_code == 200
    image = f"/console/spaces/{space_id}/charts/{chart_id}/image?window=6h"
    assert image in page.text and "CPU load" in page.text
    assert '<option value="6h" selected>' in page.text
    assert "No snapshots of these charts yet" in page.text

    drawn = client.get(image)
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"
    assert drawn.headers["cache-control"] == "private, max-age=30"
    assert drawn.content.startswith(PNG)
    assert Image.open(io.BytesIO(drawn.content)).size == (800, 400)
    sized = client.get(f"/console/spaces/{space_id}/charts/{chart_id}/image?width=640&height=300")
    assert Image.open(io.BytesIO(sized.content)).size == (640, 300)
    pixels = Image.open(io.BytesIO(sized.content)).convert("RGB").getcolors(640 * 300)
    assert pixels is not None and len(pixels) > 20, "the lines were drawn"

    for bad in ("?window=1y", "?width=20", "?width=wide"):
        answer = client.get(f"/console/spaces/{space_id}/charts/{chart_id}/image{bad}")
        assert answer.status_code == 400, (bad, answer.text)
    assert client.get(f"/console/spaces/{space_id}?window=1y").status_code == 400


def test_chart_snapshots_appear_as_thumbnails_linking_to_their_pages(
    client: TestClient, admin_token: str, signed_in: str, worker: Worker
) -> None:
    space_id, chart_id = space_with_a_chart(client, admin_token)
    taken = librato(
        client, admin_token, "POST", "/v1/snapshots", {"subject": {"chart": {"id": chart_id}}}
    )
    deadline = time.monotonic() + 20
    while (
        librato(client, admin_token, "GET", f"/v1/snapshots/{taken['id']}", None)["image_href"]
        is None
    ):
        assert time.monotonic() < deadline, "the chart snapshot was not rendered"
        time.sleep(0.05)
    page = client.get(f"/console/spaces/{space_id}").text
    assert f'href="/console/snapshots/{taken["id"]}"' in page
    thumbnail = f"/console/snapshots/{taken['id']}/thumbnail"
    assert thumbnail in page and client.get(thumbnail).status_code == 200


def test_unknown_and_other_organizations_spaces_are_not_found(
    client: TestClient, db: Database, signed_in: str
) -> None:
    other = Accounts(db).create_token(org="globex", email=ADMIN, role="admin")
    space_id, chart_id = space_with_a_chart(client, other, "Globex secrets")
    for path in (
        f"/console/spaces/{space_id}",
        f"/console/spaces/{space_id}/charts/{chart_id}/image",
        "/console/spaces/999999",
        "/console/spaces/abc",
        f"/console/spaces/999999/charts/{chart_id}/image",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.text)
    assert "Globex secrets" not in client.get("/console/spaces").text
