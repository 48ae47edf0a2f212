"""The official `librato-metrics` 3.1.0 client against a real server: measurements in, a space and
charts, a snapshot rendered by the worker, and the PNG it links to."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import librato
import pytest
from PIL import Image

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.worker import Worker
from tests.servers import serving

EMAIL = "ops@acme.test"
# The client opens a connection per call and leaves it to the garbage collector when it raises.
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


def connect(url: str, token: str) -> librato.LibratoConnection:
    return librato.connect(EMAIL, token, hostname=urlsplit(url).netloc, protocol="http")


def wait_for_job(url: str, token: str, job_href: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        job = httpx.get(job_href, auth=(EMAIL, token)).json()
        if job["state"] in ("complete", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_the_official_client_submits_charts_and_snapshots(server: str, token: str) -> None:
    api = connect(server, token)
    now = int(time.time())
    queue = api.new_queue()
    for second in range(0, 600, 10):
        for host, base in (("web-1", 10.0), ("web-2", 30.0)):
            queue.add_tagged(
                "cpu.load", base + second / 60, time=now - 600 + second, tags={"host": host}
            )
    queue.submit()
    api.submit("queue.depth", 7, type="gauge", source="worker-1")
    api.submit("requests", 120, type="counter")

    read = api.get_tagged("cpu.load", duration=900, resolution=60)
    hosts = sorted(s["tags"]["host"] for s in read["series"])
    assert hosts == ["web-1", "web-2"]
    assert all(len(s["measurements"]) >= 10 for s in read["series"])
    gauge = api.get("queue.depth", count=10, resolution=1)
    assert gauge.name == "queue.depth"
    assert [m["value"] for m in gauge.measurements["worker-1"]] == [7.0]
    names = [m.name for m in api.list_all_metrics()]
    assert {"cpu.load", "queue.depth", "requests"} <= set(names)

    space = api.create_space("Production")
    assert api.find_space("Production").id == space.id
    chart = api.create_chart(
        "CPU by host",
        space,
        type="line",
        streams=[
            {
                "metric": "cpu.load",
                "tags": [{"name": "host", "values": ["*"]}],
                "group_function": "breakout",
            }
        ],
    )
    big = api.create_chart(
        "Queue", space, type="bignumber", streams=[{"metric": "queue.depth", "source": "*"}]
    )
    assert [c.id for c in api.list_charts_in_space(space)] == [chart.id, big.id]
    fetched = api.get_chart(chart.id, space)
    assert fetched.name == "CPU by host" and fetched.streams[0].metric == "cpu.load"
    fetched.name = "CPU load by host"
    api.update_chart(fetched, space, name="CPU load by host")
    assert api.get_chart(chart.id, space).name == "CPU load by host"

    requested = httpx.post(
        server + "/v1/snapshots",
        auth=(EMAIL, token),
        json={"subject": {"chart": {"id": chart.id, "type": "line"}}, "duration": 900},
    )
    assert requested.status_code == 202, requested.text
    body = requested.json()
    assert requested.headers["location"] == f"/v1/snapshots/{body['id']}"
    assert body["image_href"] is None and body["duration"] == 900
    assert wait_for_job(server, token, body["job_href"])["state"] == "complete"

    done = httpx.get(body["href"], auth=(EMAIL, token)).json()
    image = httpx.get(done["image_href"])  # a signed link: no credentials needed
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(image.content))
    assert picture.size == (800, 400)
    colors = picture.convert("RGB").getcolors(maxcolors=1 << 16) or []
    assert len(colors) > 20, "the chart should draw lines, axes and text, not a blank image"

    # The same snapshot in the native API, and shared through a public link.
    bearer = {"Authorization": f"Bearer {token}"}
    listed = httpx.get(server + "/api/v1/snapshots?kind=chart", headers=bearer).json()["items"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert listed[0]["metadata"]["chart_name"] == "CPU load by host"
    native_png = httpx.get(server + f"/api/v1/snapshots/{body['id']}/image", headers=bearer)
    assert native_png.content == image.content
    share = httpx.post(server + f"/api/v1/snapshots/{body['id']}/shares", headers=bearer, json={})
    page = httpx.get(share.json()["url"])
    assert page.status_code == 200 and "chart “CPU load by host”" in page.text
    assert 'property="og:image"' in page.text

    api.delete_chart(big.id, space.id)
    api.delete_space(space.id)
    api.delete("requests")
    assert "requests" not in [m.name for m in api.list_metrics()]


def snapshot_png(server: str, token: str, chart_id: int) -> Image.Image:
    created = httpx.post(
        server + "/v1/snapshots",
        auth=(EMAIL, token),
        json={"subject": {"chart": {"id": chart_id}}, "duration": 600},
    )
    assert created.status_code == 202, created.text
    assert wait_for_job(server, token, created.json()["job_href"])["state"] == "complete"
    done = httpx.get(created.json()["href"], auth=(EMAIL, token)).json()
    return Image.open(io.BytesIO(httpx.get(done["image_href"]).content))


def test_every_chart_type_and_a_chart_without_data_render(server: str, token: str) -> None:
    api = connect(server, token)
    api.submit("queue.depth", 7, type="gauge", source="worker-1")
    space = api.create_space("Ops")
    charts = [
        space.add_single_line_chart("Nothing yet", metric="never.sent"),
        space.add_bignumber_chart("Queue", "queue.depth"),
        space.add_single_stacked_chart("Queue stacked", "queue.depth"),
    ]
    assert [c.type for c in api.list_charts_in_space(space)] == ["line", "bignumber", "stacked"]
    for chart in charts:
        picture = snapshot_png(server, token, chart.id)
        assert picture.size == (800, 400)
        assert len(picture.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 5


def test_client_errors_are_4xx_the_client_understands(server: str, token: str) -> None:
    api = connect(server, token)
    with pytest.raises(librato.exceptions.BadRequest):
        api.submit("bad name", 1)
    with pytest.raises(librato.exceptions.NotFound):
        api.get("never.sent")
    with pytest.raises(librato.exceptions.Unauthorized):
        connect(server, "snap_wrong").list_metrics()
