"""The official `librato-metrics` 3.1.0 client against a real server: annotation streams and events
round trip, a chart snapshot draws counters as rates, thresholds and annotation markers, and the
alert and service calls get a 4xx the client understands."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import librato
import numpy as np
import pytest
from PIL import Image

from snapshotd.config import Settings
from snapshotd.engines.chart_semantics import THRESHOLD_COLORS
from snapshotd.engines.charts import MARKER_COLOR
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.worker import Worker
from tests.http.test_librato_client import EMAIL, connect, snapshot_png
from tests.servers import serving

pytestmark = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture
def server(settings: Settings, db: Database, blobs: FileBlobStore, worker: Worker) -> Iterator[str]:
    with serving(create_app(settings, db=db, blobs=blobs, worker=worker)) as url:
        yield url


@pytest.fixture
def token(db: Database) -> str:
    return Accounts(db).create_token(org="acme", email=EMAIL, role="admin")


def test_annotations_round_trip_through_the_official_client(
    server: str, token: str, db: Database
) -> None:
    api = connect(server, token)
    now = int(time.time())
    link = {"rel": "github", "href": "https://github.example/acme/app/commit/01beaf", "label": "c"}
    posted = api.post_annotation(
        "app-deploys",
        title="Deployed v56",
        source="web-1",
        description="v56 - fixed typo",
        start_time=now - 300,
        links=[link],
    )
    assert posted["title"] == "Deployed v56" and posted["links"] == [link]
    second = api.post_annotation("app-deploys", title="Chef run", start_time=now - 120)
    api.post_annotation("db-maintenance", title="Vacuum", start_time=now - 60, end_time=now - 30)

    assert [s.name for s in api.list_annotation_streams()] == ["app-deploys", "db-maintenance"]
    renamed = api.update_annotation_stream("app-deploys", display_name="Deploys to the app")
    assert (renamed.name, renamed.display_name) == ("app-deploys", "Deploys to the app")

    plain = api.get_annotation_stream("app-deploys")
    assert plain.display_name == "Deploys to the app" and plain.events is None
    stream = api.get_annotation_stream("app-deploys", start_time=now - 600)
    assert len(stream.events) == 1
    grouped = stream.events[0]
    assert sorted(grouped) == ["unassigned", "web-1"]
    assert [e["title"] for e in grouped["web-1"]] == ["Deployed v56"]
    assert grouped["unassigned"][0]["id"] == second["id"]
    only_web = api.get_annotation_stream("app-deploys", start_time=now - 600, sources=["web-*"])
    assert list(only_web.events[0]) == ["web-1"]

    event = api.get_annotation("app-deploys", posted["id"])
    assert event.name == "app-deploys"

    auth = (EMAIL, token)
    base = f"{server}/v1/annotations/app-deploys/{second['id']}"
    changed = httpx.put(base, auth=auth, data={"description": "ran", "end_time": str(now - 100)})
    assert changed.status_code == 204, changed.text
    body = httpx.get(base, auth=auth).json()
    assert (body["description"], body["end_time"], body["start_time"]) == (
        "ran",
        now - 100,
        now - 120,
    )
    added = httpx.post(f"{base}/links", auth=auth, json={"rel": "ci", "href": "https://ci.test/9"})
    assert added.status_code == 201 and added.headers["location"].endswith("/links/ci")
    again = httpx.post(f"{base}/links", auth=auth, json={"rel": "ci", "href": "https://ci.test/9"})
    assert again.status_code == 422 and "errors" in again.json()
    assert httpx.delete(f"{base}/links/ci", auth=auth).status_code == 204
    assert httpx.delete(base, auth=auth).status_code == 204
    with pytest.raises(librato.exceptions.NotFound):
        api.get_annotation("app-deploys", second["id"])

    # another organization sees none of it
    rival = Accounts(db).create_token(org="rival", email="ops@rival.test", role="admin")
    other = librato.connect(
        "ops@rival.test", rival, hostname=urlsplit(server).netloc, protocol="http"
    )
    assert list(other.list_annotation_streams()) == []
    with pytest.raises(librato.exceptions.NotFound):
        other.get_annotation_stream("app-deploys", start_time=now - 600)

    # bad input is a 400 naming the field
    with pytest.raises(librato.exceptions.BadRequest):
        api.post_annotation("app-deploys", description="no title")
    refused = httpx.post(
        f"{server}/v1/annotations/app-deploys",
        auth=auth,
        json={"title": "x", "links": [{"rel": "a", "href": "javascript:alert(1)"}]},
    )
    assert refused.status_code == 400
    assert refused.json() == {
        "errors": {"params": {"links.0.href": ["must be an http or https URL"]}}
    }
    with pytest.raises(librato.exceptions.NotFound):
        api.get_annotation("app-deploys", "latest")

    api.delete_annotation_stream("app-deploys")
    assert [s.name for s in api.list_annotation_streams()] == ["db-maintenance"]


def test_alerts_and_services_answer_404_in_librato_shape(server: str, token: str) -> None:
    api = connect(server, token)
    with pytest.raises(librato.exceptions.NotFound):
        list(api.list_alerts())
    with pytest.raises(librato.exceptions.NotFound):
        list(api.list_services())
    with pytest.raises(librato.exceptions.NotFound):
        api.create_alert("cpu.high")
    answer = httpx.delete(f"{server}/v1/alerts/12", auth=(EMAIL, token))
    assert answer.status_code == 404
    assert "does not alert" in answer.json()["errors"]["request"][0]
    assert httpx.get(f"{server}/v1/services").status_code == 401  # credentials come first


def near(picture: Image.Image, color: str) -> int:
    wanted = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    distance = np.abs(np.asarray(picture.convert("RGB")).astype(int) - wanted).sum(axis=2)
    return int((distance < 80).sum())


def test_a_snapshot_draws_counter_rates_thresholds_and_annotations(server: str, token: str) -> None:
    api = connect(server, token)
    now = int(time.time())
    queue = api.new_queue()
    total = 0
    for minute in range(10):
        total = 0 if minute == 6 else total + 600  # a restart at minute 6
        queue.add(
            "requests", total, type="counter", source="web-1", measure_time=now - 590 + 60 * minute
        )
    queue.submit()
    api.post_annotation("deploys", title="v42", start_time=now - 290)
    space = api.create_space("Traffic")
    chart = api.create_chart(
        "Requests per second",
        space,
        type="line",
        streams=[{"metric": "requests", "source": "*", "transform_function": "x / 60"}],
        thresholds=[{"operator": ">", "value": 12, "type": "red"}],
        annotations=["deploys"],
    )
    fetched = httpx.get(
        f"{server}/v1/spaces/{space.id}/charts/{chart.id}", auth=(EMAIL, token)
    ).json()
    assert fetched["annotations"] == ["deploys"]
    assert fetched["thresholds"] == [{"operator": ">", "value": 12.0, "type": "red"}]

    picture = snapshot_png(server, token, chart.id)
    assert near(picture, THRESHOLD_COLORS["red"]) > 100
    assert near(picture, MARKER_COLOR) > 100

    bearer = {"Authorization": f"Bearer {token}"}
    listed = httpx.get(server + "/api/v1/snapshots?kind=chart", headers=bearer).json()["items"]
    metadata = listed[0]["metadata"]
    assert metadata["markers"] == 1
    # ten running totals give nine rates
    assert metadata["streams"] == [{"metric": "requests", "lines": 1, "points": 9}]
