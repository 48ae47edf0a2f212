"""Composite metrics with the official `librato-metrics` 3.1.0 client against a real server:
composite queries in both shapes, stored composites, a chart with a composite stream snapshotted
by the worker, and expressions that do not parse."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import httpx
import librato
import pytest

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.worker import Worker
from tests.http.test_librato_client import EMAIL, connect, wait_for_job
from tests.servers import serving

pytestmark = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)
RATIO = 'divide([sum(s("errors", "*")), sum(s("requests", "*"))])'


@pytest.fixture(autouse=True)
def collect_client_sockets() -> Iterator[None]:
    """The client leaves a connection to the garbage collector when it raises: collect it while
    this module's warning filter applies, not at the end of the whole run."""
    yield
    gc.collect()


@pytest.fixture
def server(settings: Settings, db: Database, blobs: FileBlobStore, worker: Worker) -> Iterator[str]:
    with serving(create_app(settings, db=db, blobs=blobs, worker=worker)) as url:
        yield url


@pytest.fixture
def token(db: Database) -> str:
    return Accounts(db).create_token(org="acme", email=EMAIL, role="admin")


def submit(api: librato.LibratoConnection) -> int:
    """errors and requests of two hosts, three minutes; returns the first minute."""
    first = (int(time.time()) - 600) // 60 * 60
    queue = api.new_queue()
    rows = {
        ("errors", "web-1"): [2, 4, 6],
        ("errors", "web-2"): [3, 1, 4],
        ("requests", "web-1"): [10, 20, 30],
        ("requests", "web-2"): [15, 30, 70],
    }
    for (name, host), values in rows.items():
        for minute, value in enumerate(values):
            queue.add_tagged(name, value, time=first + 60 * minute, tags={"host": host})
    queue.submit()
    return first


def test_composite_queries_in_both_shapes(server: str, token: str) -> None:
    api = connect(server, token)
    first = submit(api)
    minutes = [first, first + 60, first + 120]

    legacy = api.get_composite(RATIO, start_time=first, resolution=60)
    assert legacy["compose"] == RATIO and legacy["resolution"] == 60
    [ratio] = legacy["measurements"]
    assert ratio["series"] == [
        {"measure_time": minutes[0], "value": 0.2},
        {"measure_time": minutes[1], "value": 0.1},
        {"measure_time": minutes[2], "value": 0.1},
    ]
    assert ratio["source"] == {"name": "*", "display_name": "*"}
    assert ratio["period"] == 60 and ratio["query"]["metric"] == "divide"

    tagged = api.get_composite_tagged(
        'group_by("host", sum(s("errors", {"host": "*"})))', start_time=first, resolution=60
    )
    assert [(s["tags"], [m["value"] for m in s["measurements"]]) for s in tagged] == [
        ({"host": "web-1"}, [2.0, 4.0, 6.0]),
        ({"host": "web-2"}, [3.0, 1.0, 4.0]),
    ]
    assert tagged[0]["measurements"][0] == {"time": first, "value": 2.0}
    assert tagged[0]["metric"]["name"] == "errors" and tagged[0]["period"] == 60

    by_source = api.get_composite('s("errors", {"host": "web-2"})', start_time=first, resolution=60)
    assert [m["source"]["name"] for m in by_source["measurements"]] == ["host=web-2"]


def test_create_composite_then_read_it_back(server: str, token: str) -> None:
    api = connect(server, token)
    first = submit(api)
    created = api.create_composite("error.ratio", RATIO, description="errors per request")
    assert created["type"] == "composite" and created["composite"] == RATIO
    listed = {m.name: m for m in api.list_metrics(name="error.ratio")}
    assert listed["error.ratio"].description == "errors per request"

    auth = (EMAIL, token)
    params = {"start_time": first, "end_time": first + 179, "resolution": 60}
    legacy = httpx.get(f"{server}/v1/metrics/error.ratio", auth=auth, params=params).json()
    assert legacy["type"] == "composite" and legacy["composite"] == RATIO
    assert legacy["measurements"] == {
        "*": [
            {"measure_time": first, "value": 0.2},
            {"measure_time": first + 60, "value": 0.1},
            {"measure_time": first + 120, "value": 0.1},
        ]
    }
    tagged = api.get_tagged("error.ratio", start_time=first, resolution=60)
    assert tagged["series"] == [
        {
            "tags": {},
            "measurements": [
                {"time": first + 60 * i, "value": v} for i, v in enumerate([0.2, 0.1, 0.1])
            ],
        }
    ]

    # an update changes the expression; the metric stays a composite
    assert api.create_composite("error.ratio", 'sum(s("errors", "*"))') is None
    again = api.get_tagged("error.ratio", start_time=first, resolution=60)
    assert [m["value"] for m in again["series"][0]["measurements"]] == [5.0, 5.0, 10.0]


def test_a_chart_with_a_composite_stream_is_snapshotted(server: str, token: str) -> None:
    api = connect(server, token)
    submit(api)
    space = api.create_space("Ratios")
    chart = api.create_chart(
        "Error ratio", space, type="line", streams=[{"composite": RATIO, "name": "ratio"}]
    )
    assert api.get_chart(chart.id, space).streams[0].composite == RATIO
    big = api.create_chart(
        "Worst ratio",
        space,
        type="bignumber",
        streams=[{"composite": RATIO, "summary_function": "max"}],
    )
    auth = (EMAIL, token)
    bearer = {"Authorization": f"Bearer {token}"}
    for chart_id, lines, value in ((chart.id, 1, None), (big.id, 1, 0.2)):
        created = httpx.post(
            server + "/v1/snapshots",
            auth=auth,
            json={"subject": {"chart": {"id": chart_id}}, "duration": 900},
        )
        assert created.status_code == 202, created.text
        assert wait_for_job(server, token, created.json()["job_href"])["state"] == "complete"
        native = httpx.get(f"{server}/api/v1/snapshots/{created.json()['id']}", headers=bearer)
        metadata = native.json()["metadata"]
        assert metadata["streams"] == [{"composite": RATIO, "lines": lines, "points": 3}]
        assert metadata["value"] == value


def test_expressions_that_do_not_parse_are_400_with_a_position(server: str, token: str) -> None:
    api = connect(server, token)
    start = int(time.time()) - 600
    for call in (api.get_composite, api.get_composite_tagged):
        with pytest.raises(librato.exceptions.BadRequest) as raised:
            call('sum(s("errors", "*")', start_time=start)
        assert raised.value.error_payload == {
            "errors": {"params": {"compose": ["expected ')' but found the end at position 20"]}}
        }
    with pytest.raises(librato.exceptions.BadRequest) as raised:
        api.get_composite('sum(s("errors", "*"), {period: "60"})', start_time=start)
    assert "needs a set of series here at position 22" in str(raised.value)
    with pytest.raises(librato.exceptions.BadRequest) as raised:
        api.create_composite("broken", "ratio(")
    assert raised.value.error_payload == {
        "errors": {"params": {"composite": ["unknown function 'ratio' at position 0"]}}
    }
    with pytest.raises(librato.exceptions.NotFound):
        api.get_tagged("broken", duration=60)
    missing_start = httpx.get(
        f"{server}/v1/metrics", auth=(EMAIL, token), params={"compose": 's("a")'}
    )
    assert missing_start.status_code == 400
    assert missing_start.json() == {
        "errors": {"params": {"start_time": ["is required with compose"]}}
    }
