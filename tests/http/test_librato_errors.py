"""The Librato-compatible surface (`/v1/...`) against bad input: exact statuses, Librato's error
shapes (`{"errors": {"params": {field: [message]}}}`, `{"errors": {"request": [message]}}`), and
nothing stored when a request is refused. Runs against `api`, which has no worker: snapshot
requests queue jobs that nothing runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Chart, Job, Measurement, Metric, Snapshot, Space

EMAIL = "ops@acme.test"  # the conftest `token` fixture's user (org acme, admin)
RIVAL_EMAIL = "boss@rival.test"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
MOST = 10_000  # Settings.max_measurements_per_request's default


# -- helpers --------------------------------------------------------------------------------------


def params_error(response: Response, status: int, field: str) -> str:
    """Asserts Librato's params shape naming exactly `field`; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["errors"], body
    assert list(body["errors"]) == ["params"], body
    assert list(body["errors"]["params"]) == [field], body
    messages = body["errors"]["params"][field]
    assert isinstance(messages, list) and len(messages) == 1, body
    assert isinstance(messages[0], str) and messages[0], body
    return messages[0]


def request_error(response: Response, status: int) -> str:
    """Asserts Librato's request shape; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["errors"], body
    assert list(body["errors"]) == ["request"], body
    messages = body["errors"]["request"]
    assert isinstance(messages, list) and len(messages) == 1, body
    assert isinstance(messages[0], str) and messages[0], body
    return messages[0]


def rows(db: Database, model: type[Any]) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def metric_names(api: TestClient, token: str) -> list[str]:
    response = api.get("/v1/metrics", auth=(EMAIL, token))
    assert response.status_code == 200, response.text
    return [m["name"] for m in response.json()["metrics"]]


def assert_nothing_stored(api: TestClient, db: Database, token: str) -> None:
    assert metric_names(api, token) == []
    assert rows(db, Metric) == 0
    assert rows(db, Measurement) == 0


def make_space(api: TestClient, auth: tuple[str, str], name: str = "Production") -> int:
    response = api.post("/v1/spaces", auth=auth, json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def make_chart(
    api: TestClient, auth: tuple[str, str], space_id: int, metric: str = "cpu.load"
) -> int:
    response = api.post(
        f"/v1/spaces/{space_id}/charts",
        auth=auth,
        json={"name": "CPU", "type": "line", "streams": [{"metric": metric, "source": "*"}]},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def snapshot_request(chart_id: Any, **extra: Any) -> dict[str, Any]:
    return {"subject": {"chart": {"id": chart_id, "type": "line"}}, "duration": 900, **extra}


@pytest.fixture
def me(token: str) -> tuple[str, str]:
    return (EMAIL, token)


@pytest.fixture
def chart_id(api: TestClient, me: tuple[str, str]) -> int:
    return make_chart(api, me, make_space(api, me))


# -- 1, 2: unknown and foreign resources ----------------------------------------------------------


@pytest.mark.parametrize(
    "unknown",
    [
        pytest.param(999_999, id="int"),
        pytest.param("999999", id="digit-string"),
        pytest.param(10**30, id="huge-int"),
        pytest.param("9" * 30, id="huge-digit-string"),
    ],
)
def test_unknown_chart_id_in_a_snapshot_is_404(
    api: TestClient, db: Database, me: tuple[str, str], unknown: Any
) -> None:
    response = api.post("/v1/snapshots", auth=me, json=snapshot_request(unknown))
    assert request_error(response, 404) == f"no chart {unknown}"
    assert rows(db, Snapshot) == 0 and rows(db, Job) == 0


def test_another_organizations_space_chart_and_snapshot_are_404(
    api: TestClient, db: Database, me: tuple[str, str]
) -> None:
    rival = (RIVAL_EMAIL, Accounts(db).create_token(org="rival", email=RIVAL_EMAIL, role="admin"))
    space_id = make_space(api, rival, "Rival space")
    chart_id = make_chart(api, rival, space_id)
    taken = api.post("/v1/snapshots", auth=rival, json=snapshot_request(chart_id))
    assert taken.status_code == 202, taken.text
    snapshot_id = taken.json()["id"]
    job_id = taken.json()["job_href"].rsplit("/", 1)[1]

    refused = api.post("/v1/snapshots", auth=me, json=snapshot_request(chart_id))
    # The same answer as for a chart that never existed: nothing tells the two apart.
    assert request_error(refused, 404) == f"no chart {chart_id}"
    assert rows(db, Snapshot) == 1 and rows(db, Job) == 1  # only the rival's own

    space = api.get(f"/v1/spaces/{space_id}", auth=me)
    assert request_error(space, 404) == f"no space {space_id}"
    charts = api.get(f"/v1/spaces/{space_id}/charts", auth=me)
    assert request_error(charts, 404) == f"no space {space_id}"
    chart = api.get(f"/v1/spaces/{space_id}/charts/{chart_id}", auth=me)
    assert request_error(chart, 404) == f"no chart {chart_id}"
    snapshot = api.get(f"/v1/snapshots/{snapshot_id}", auth=me)
    assert request_error(snapshot, 404) == f"no snapshot {snapshot_id}"
    job = api.get(f"/v1/jobs/{job_id}", auth=me)
    assert request_error(job, 404) == f"no job {job_id}"

    # Writes are refused the same way and leave the rival's data alone.
    renamed = api.put(f"/v1/spaces/{space_id}", auth=me, json={"name": "Mine now"})
    assert request_error(renamed, 404) == f"no space {space_id}"
    deleted = api.delete(f"/v1/spaces/{space_id}/charts/{chart_id}", auth=me)
    assert request_error(deleted, 404) == f"no chart {chart_id}"
    assert api.get(f"/v1/spaces/{space_id}", auth=rival).json() == {
        "id": space_id,
        "name": "Rival space",
        "charts": [{"id": chart_id}],
    }
    assert api.get("/v1/spaces", auth=me).json()["spaces"] == []


# -- 3: unknown chart type ------------------------------------------------------------------------


def test_an_unknown_chart_type_on_chart_create_is_400(
    api: TestClient, db: Database, me: tuple[str, str]
) -> None:
    space_id = make_space(api, me)
    response = api.post(
        f"/v1/spaces/{space_id}/charts",
        auth=me,
        json={"name": "CPU", "type": "pie", "streams": [{"metric": "cpu.load"}]},
    )
    params_error(response, 400, "type")
    assert api.get(f"/v1/spaces/{space_id}/charts", auth=me).json() == []
    assert rows(db, Chart) == 0


def test_an_unknown_chart_type_in_a_snapshot_subject_is_400(
    api: TestClient, db: Database, me: tuple[str, str], chart_id: int
) -> None:
    body = {"subject": {"chart": {"id": chart_id, "type": "pie"}}, "duration": 900}
    response = api.post("/v1/snapshots", auth=me, json=body)
    params_error(response, 400, "subject.chart.type")
    assert rows(db, Snapshot) == 0 and rows(db, Job) == 0


# -- 4, 5: duration and end_time ------------------------------------------------------------------

BAD_DURATIONS: list[tuple[str, Callable[[Settings], Any]]] = [
    ("negative", lambda s: -60),
    ("zero", lambda s: 0),
    ("fraction", lambda s: 90.5),
    ("text", lambda s: "abc"),
    ("boolean", lambda s: True),
    ("over-the-maximum", lambda s: s.chart_max_duration_seconds + 1),
    ("huge", lambda s: 10**30),
]


@pytest.mark.parametrize(
    "make_duration", [make for _, make in BAD_DURATIONS], ids=[n for n, _ in BAD_DURATIONS]
)
def test_a_bad_snapshot_duration_is_400(
    api: TestClient,
    db: Database,
    settings: Settings,
    me: tuple[str, str],
    chart_id: int,
    make_duration: Callable[[Settings], Any],
) -> None:
    body = snapshot_request(chart_id, duration=make_duration(settings))
    response = api.post("/v1/snapshots", auth=me, json=body)
    params_error(response, 400, "duration")
    assert rows(db, Snapshot) == 0 and rows(db, Job) == 0


def test_the_longest_duration_allowed_is_accepted(
    api: TestClient, settings: Settings, me: tuple[str, str], chart_id: int
) -> None:
    longest = settings.chart_max_duration_seconds
    response = api.post("/v1/snapshots", auth=me, json=snapshot_request(chart_id, duration=longest))
    assert response.status_code == 202, response.text
    assert response.json()["duration"] == longest


@pytest.mark.parametrize("ahead", [3600, 300], ids=["an-hour", "five-minutes"])
def test_an_end_time_in_the_future_is_400(
    api: TestClient, db: Database, me: tuple[str, str], chart_id: int, ahead: int
) -> None:
    body = snapshot_request(chart_id, end_time=int(time.time()) + ahead)
    response = api.post("/v1/snapshots", auth=me, json=body)
    params_error(response, 400, "end_time")
    assert rows(db, Snapshot) == 0 and rows(db, Job) == 0


def test_an_end_time_in_the_past_is_accepted(
    api: TestClient, db: Database, me: tuple[str, str], chart_id: int
) -> None:
    end = 1_700_000_000  # 2023-11-14T22:13:20Z
    response = api.post("/v1/snapshots", auth=me, json=snapshot_request(chart_id, end_time=end))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["end_time"].startswith("2023-11-14T22:13:20")
    assert body["duration"] == 900 and body["image_href"] is None
    assert response.headers["location"] == f"/v1/snapshots/{body['id']}"
    assert rows(db, Snapshot) == 1


# -- 6: non-numeric measurement values ------------------------------------------------------------

# (raw JSON text of the value, whether the refusal names the value field)
BAD_VALUES = [
    ('"abc"', True),
    ("null", True),
    ("true", True),
    ('{"a": 1}', True),
    ("[1]", True),
    ("1e400", True),  # parses as inf: out of Librato's range
    ("NaN", False),  # not JSON at all: the body is refused as a whole
    ("Infinity", False),
    ("-Infinity", False),
]
SUBMISSIONS = {
    "/v1/measurements": (
        '{"measurements": [{"name": "cpu", "value": %s, "tags": {"host": "a"}}]}',
        "measurements.0.value",
    ),
    "/v1/metrics": ('{"gauges": [{"name": "cpu", "value": %s}]}', "gauges.0.value"),
}


@pytest.mark.parametrize("path", list(SUBMISSIONS))
@pytest.mark.parametrize(("value", "names_field"), BAD_VALUES, ids=[v for v, _ in BAD_VALUES])
def test_a_non_numeric_value_is_400_and_creates_no_metric(
    api: TestClient,
    db: Database,
    token: str,
    path: str,
    value: str,
    names_field: bool,
) -> None:
    template, field = SUBMISSIONS[path]
    response = api.post(path, auth=(EMAIL, token), content=template % value, headers=JSON)
    if names_field:
        params_error(response, 400, field)
    else:
        assert "not valid JSON" in request_error(response, 400)
    assert_nothing_stored(api, db, token)


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf", "-Infinity"])
def test_a_non_numeric_form_value_is_400_and_creates_no_metric(
    api: TestClient, db: Database, token: str, value: str
) -> None:
    form = f"gauges[0][name]=cpu&gauges[0][value]={quote(value)}"
    response = api.post("/v1/metrics", auth=(EMAIL, token), content=form, headers=FORM)
    params_error(response, 400, "gauges.0.value")
    assert_nothing_stored(api, db, token)


@pytest.mark.parametrize("path", list(SUBMISSIONS))
def test_one_bad_value_refuses_the_whole_batch(
    api: TestClient, db: Database, token: str, path: str
) -> None:
    good = '{"name": "good", "value": 1, "tags": {"host": "a"}}'
    bad = '{"name": "bad", "value": "abc", "tags": {"host": "a"}}'
    key = "measurements" if path == "/v1/measurements" else "gauges"
    body = f'{{"{key}": [{good}, {bad}]}}'
    response = api.post(path, auth=(EMAIL, token), content=body, headers=JSON)
    params_error(response, 400, f"{key}.1.value")
    assert_nothing_stored(api, db, token)


@pytest.mark.parametrize("path", list(SUBMISSIONS))
def test_a_deeply_nested_json_body_is_400(
    api: TestClient, db: Database, token: str, path: str
) -> None:
    body = '{"gauges": ' + "[" * 100_000
    response = api.post(path, auth=(EMAIL, token), content=body, headers=JSON)
    assert "not valid JSON" in request_error(response, 400)
    assert_nothing_stored(api, db, token)


def test_a_json_body_of_blanks_is_400_while_no_body_is_none(api: TestClient, token: str) -> None:
    blank = api.put("/v1/metrics/cpu", auth=(EMAIL, token), content="\r\n", headers=JSON)
    assert "not valid JSON" in request_error(blank, 400)
    assert "not valid JSON" not in api.put("/v1/metrics/cpu", auth=(EMAIL, token)).text


def test_a_count_too_large_to_store_is_400(api: TestClient, db: Database, token: str) -> None:
    item = {"name": "cpu", "count": 1e100, "sum": 1.0, "tags": {"host": "a"}}
    response = api.post("/v1/measurements", auth=(EMAIL, token), json={"measurements": [item]})
    params_error(response, 400, "measurements.0.count")
    assert_nothing_stored(api, db, token)


@pytest.mark.parametrize("path", list(SUBMISSIONS))
def test_a_period_too_large_to_store_is_400_on_submit(
    api: TestClient, db: Database, token: str, path: str
) -> None:
    item = {"name": "cpu", "value": 1, "period": 1e100, "tags": {"host": "a"}}
    key = "measurements" if path == "/v1/measurements" else "gauges"
    response = api.post(path, auth=(EMAIL, token), json={key: [item]})
    params_error(response, 400, f"{key}.0.period")
    assert_nothing_stored(api, db, token)


@pytest.mark.parametrize("path", ["/v1/metrics/cpu", "/v1/metrics"])
def test_a_period_too_large_to_store_is_400_on_put(api: TestClient, token: str, path: str) -> None:
    auth = (EMAIL, token)
    created = api.put("/v1/metrics/cpu", auth=auth, json={"type": "gauge", "period": 60})
    assert created.status_code == 201, created.text
    body = {"period": 1e100, **({"names": ["cpu"]} if path == "/v1/metrics" else {})}
    params_error(api.put(path, auth=auth, json=body), 400, "period")
    assert api.get("/v1/metrics/cpu", auth=auth).json()["period"] == 60


@pytest.mark.parametrize("period", [-5, 0, 1.5])
@pytest.mark.parametrize("path", list(SUBMISSIONS))
def test_a_period_that_is_not_whole_seconds_is_400_on_submit(
    api: TestClient, db: Database, token: str, path: str, period: float
) -> None:
    item = {"name": "cpu", "value": 1, "period": period, "tags": {"host": "a"}}
    key = "measurements" if path == "/v1/measurements" else "gauges"
    response = api.post(path, auth=(EMAIL, token), json={key: [item]})
    params_error(response, 400, f"{key}.0.period")
    assert_nothing_stored(api, db, token)


# -- 7: the measurement cap -----------------------------------------------------------------------


def test_ten_thousand_measurements_are_accepted_and_all_readable(
    api: TestClient, db: Database, token: str
) -> None:
    now = int(time.time())
    first = now - MOST
    items = [
        {"name": "bulk", "value": float(i), "time": first + i, "tags": {"host": "web-1"}}
        for i in range(MOST)
    ]
    started = time.monotonic()
    response = api.post("/v1/measurements", auth=(EMAIL, token), json={"measurements": items})
    elapsed = time.monotonic() - started
    assert 200 <= response.status_code < 300, response.text
    assert elapsed < 15, f"10,000 measurements took {elapsed:.1f} s"
    assert rows(db, Measurement) == MOST

    read = api.get(
        "/v1/measurements/bulk",
        auth=(EMAIL, token),
        params={"resolution": 1, "start_time": first, "end_time": now},
    )
    assert read.status_code == 200, read.text
    series = read.json()["series"]
    assert [s["tags"] for s in series] == [{"host": "web-1"}]
    points = series[0]["measurements"]
    assert len(points) == MOST
    assert [p["time"] for p in points] == list(range(first, now))
    assert [p["value"] for p in points] == [float(i) for i in range(MOST)]


@pytest.mark.parametrize("path", ["/v1/measurements", "/v1/metrics"])
def test_ten_thousand_and_one_measurements_are_413(
    api: TestClient, db: Database, token: str, path: str
) -> None:
    items = [{"name": "bulk", "value": 1.0, "tags": {"host": "web-1"}}] * (MOST + 1)
    key = "measurements" if path == "/v1/measurements" else "gauges"
    started = time.monotonic()
    response = api.post(path, auth=(EMAIL, token), json={key: items})
    assert time.monotonic() - started < 15
    assert request_error(response, 413) == f"at most {MOST} measurements in one request"
    assert_nothing_stored(api, db, token)


def test_the_cap_counts_gauges_and_counters_together(
    api: TestClient, db: Database, token: str
) -> None:
    half = [{"name": "bulk", "value": 1.0}] * (MOST // 2)
    body = {"gauges": half, "counters": [*half, {"name": "bulk", "value": 1.0}]}
    response = api.post("/v1/metrics", auth=(EMAIL, token), json=body)
    assert request_error(response, 413) == f"at most {MOST} measurements in one request"
    assert_nothing_stored(api, db, token)


# -- 8: metric names ------------------------------------------------------------------------------

BAD_NAMES = {"space": "cpu load", "unicode": "温度", "256-characters": "a" * 256}


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_a_bad_metric_name_is_400_on_submit_and_read(
    api: TestClient, db: Database, token: str, name: str
) -> None:
    auth = (EMAIL, token)
    tagged = {"measurements": [{"name": name, "value": 1, "tags": {"host": "a"}}]}
    params_error(api.post("/v1/measurements", auth=auth, json=tagged), 400, "measurements.0.name")
    legacy = {"gauges": [{"name": name, "value": 1}]}
    params_error(api.post("/v1/metrics", auth=auth, json=legacy), 400, "gauges.0.name")
    keyed = {"gauges": {name: {"value": 1}}}
    params_error(api.post("/v1/metrics", auth=auth, json=keyed), 400, "gauges.0.name")
    assert_nothing_stored(api, db, token)

    path = quote(name, safe="")
    params_error(api.get(f"/v1/metrics/{path}", auth=auth), 400, "name")
    params_error(api.get(f"/v1/metrics/{path}?count=1&resolution=1", auth=auth), 400, "name")
    read = api.get(f"/v1/measurements/{path}?resolution=1&duration=60", auth=auth)
    params_error(read, 400, "name")


def test_a_255_character_metric_name_is_accepted(api: TestClient, token: str) -> None:
    name = "a" * 255
    body = {"measurements": [{"name": name, "value": 1, "tags": {"host": "a"}}]}
    response = api.post("/v1/measurements", auth=(EMAIL, token), json=body)
    assert response.status_code == 202, response.text
    assert api.get(f"/v1/metrics/{name}", auth=(EMAIL, token)).json()["name"] == name


# -- 9: a chart without data ----------------------------------------------------------------------


def test_a_snapshot_of_a_chart_whose_streams_match_no_data_is_accepted(
    api: TestClient, db: Database, me: tuple[str, str]
) -> None:
    space_id = make_space(api, me)
    chart_id = make_chart(api, me, space_id, metric="never.sent")
    response = api.post("/v1/snapshots", auth=me, json=snapshot_request(chart_id))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["subject"]["chart"]["id"] == chart_id and body["image_href"] is None
    job = api.get(f"/v1/jobs/{body['job_href'].rsplit('/', 1)[1]}", auth=me)
    assert job.status_code == 200 and job.json()["state"] == "queued"
    assert api.get(f"/v1/snapshots/{body['id']}", auth=me).json()["id"] == body["id"]


# -- 10, 11: body encodings -----------------------------------------------------------------------


def legacy_points(api: TestClient, token: str, name: str) -> dict[str, list[float]]:
    read = api.get(f"/v1/metrics/{name}", auth=(EMAIL, token), params={"count": 10})
    assert read.status_code == 200, read.text
    return {source: [p["value"] for p in ps] for source, ps in read.json()["measurements"].items()}


def test_a_form_encoded_legacy_submission_is_stored(api: TestClient, token: str) -> None:
    form = "gauges[0][name]=x&gauges[0][value]=1.5&source=web-1"
    response = api.post("/v1/metrics", auth=(EMAIL, token), content=form, headers=FORM)
    assert response.status_code == 200, response.text
    assert legacy_points(api, token, "x") == {"web-1": [1.5]}
    # The same fields as httpx encodes a form (brackets percent-encoded).
    fields = {"gauges[0][name]": "z", "gauges[0][value]": "2.5", "source": "web-3"}
    response = api.post("/v1/metrics", auth=(EMAIL, token), data=fields)
    assert response.status_code == 200, response.text
    assert legacy_points(api, token, "z") == {"web-3": [2.5]}


def test_a_json_body_sent_with_a_form_content_type_is_read_as_json(
    api: TestClient, token: str
) -> None:
    """What `curl -d '{…}'` sends."""
    body = '{"gauges": [{"name": "y", "value": 2}], "source": "web-2"}'
    response = api.post("/v1/metrics", auth=(EMAIL, token), content=body, headers=FORM)
    assert response.status_code == 200, response.text
    assert legacy_points(api, token, "y") == {"web-2": [2.0]}


def test_a_form_body_on_tagged_measurements_is_415(
    api: TestClient, db: Database, token: str
) -> None:
    form = "measurements[0][name]=x&measurements[0][value]=1&tags[host]=a"
    response = api.post("/v1/measurements", auth=(EMAIL, token), content=form, headers=FORM)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"errors": {"request": ["Content type was not application/json"]}}
    assert_nothing_stored(api, db, token)


# -- 12: credentials and roles --------------------------------------------------------------------


def test_missing_and_wrong_credentials_get_the_same_401(
    api: TestClient, db: Database, token: str
) -> None:
    attempts: list[tuple[str, str] | None] = [
        None,
        (EMAIL, "snap_wrong"),
        ("someone@else.test", token),
    ]
    answers = set()
    for auth in attempts:
        for method, path in (("GET", "/v1/metrics"), ("POST", "/v1/measurements")):
            body = {"measurements": [{"name": "cpu", "value": 1, "tags": {"host": "a"}}]}
            response = api.request(method, path, auth=auth, json=body if method == "POST" else None)
            message = request_error(response, 401)
            assert response.headers["www-authenticate"].startswith("Basic "), auth
            answers.add((message, response.text, response.headers["www-authenticate"]))
    assert len(answers) == 1, answers
    assert_nothing_stored(api, db, token)


def test_repeated_failed_sign_ins_get_429_in_the_flat_shape(
    settings: Settings, db: Database, blobs: FileBlobStore, token: str
) -> None:
    # A small budget refills slowly (one miss per 12 s), so a slow machine cannot refill it
    # between the last miss and the checks below.
    tight = settings.model_copy(update={"share_misses_per_minute": 5})
    api = TestClient(create_app(tight, db=db, blobs=blobs))
    for _ in range(tight.share_misses_per_minute):
        assert api.get("/v1/metrics", auth=(EMAIL, "snap_wrong")).status_code == 401
    for auth in ((EMAIL, "snap_wrong"), (EMAIL, token)):  # the address is blocked, not the token
        response = api.get("/v1/metrics", auth=auth)
        assert response.status_code == 429, response.text
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["retry-after"]) >= 1
        body = response.json()
        assert sorted(body) == ["error", "request_time"]
        assert (
            isinstance(body["request_time"], int) and abs(body["request_time"] - time.time()) < 60
        )
        assert isinstance(body["error"], str) and body["error"]


def test_a_viewer_token_reads_but_cannot_write(api: TestClient, db: Database, token: str) -> None:
    viewer = (
        "viewer@acme.test",
        Accounts(db).create_token(org="acme", email="viewer@acme.test", role="viewer"),
    )
    listed = api.get("/v1/metrics", auth=viewer)
    assert listed.status_code == 200, listed.text
    assert listed.json()["metrics"] == []
    body = {"measurements": [{"name": "cpu", "value": 1, "tags": {"host": "a"}}]}
    assert "viewer" in request_error(api.post("/v1/measurements", auth=viewer, json=body), 403)
    assert "viewer" in request_error(api.post("/v1/spaces", auth=viewer, json={"name": "S"}), 403)
    legacy = {"gauges": [{"name": "cpu", "value": 1}]}
    request_error(api.post("/v1/metrics", auth=viewer, json=legacy), 403)
    assert_nothing_stored(api, db, token)
    assert rows(db, Space) == 0


# -- 13: pagination -------------------------------------------------------------------------------


def test_spaces_paginate_and_refuse_a_page_over_100(api: TestClient, me: tuple[str, str]) -> None:
    for n in range(1, 6):
        make_space(api, me, f"space-{n}")
    page = api.get("/v1/spaces", auth=me, params={"length": 2, "offset": 2})
    assert page.status_code == 200, page.text
    assert page.json()["query"] == {"offset": 2, "length": 2, "found": 5, "total": 5}
    assert [s["name"] for s in page.json()["spaces"]] == ["space-3", "space-4"]
    last = api.get("/v1/spaces", auth=me, params={"length": 2, "offset": 4}).json()
    assert last["query"] == {"offset": 4, "length": 1, "found": 5, "total": 5}
    params_error(api.get("/v1/spaces", auth=me, params={"length": 101}), 400, "length")


@pytest.mark.parametrize(
    ("field", "value"),
    [("length", "-1"), ("length", "2.5"), ("length", "x"), ("offset", "-1"), ("sort", "up")],
)
@pytest.mark.parametrize("path", ["/v1/spaces", "/v1/metrics"])
def test_bad_pagination_parameters_are_400(
    api: TestClient, me: tuple[str, str], path: str, field: str, value: str
) -> None:
    params_error(api.get(path, auth=me, params={field: value}), 400, field)


@pytest.mark.parametrize("offset", [str(2**63), "1e100"])
@pytest.mark.parametrize("path", ["/v1/spaces", "/v1/metrics"])
def test_an_offset_too_large_is_400_or_an_empty_page(
    api: TestClient, me: tuple[str, str], path: str, offset: str
) -> None:
    response = api.get(path, auth=me, params={"offset": offset})
    if response.status_code == 200:
        assert response.json()["query"]["length"] == 0
    else:
        params_error(response, 400, "offset")


# -- 14: conflicts and unsupported features -------------------------------------------------------


def test_a_duplicate_space_name_is_422(api: TestClient, db: Database, me: tuple[str, str]) -> None:
    make_space(api, me, "Ops")
    params_error(api.post("/v1/spaces", auth=me, json={"name": "Ops"}), 422, "name")
    assert api.get("/v1/spaces", auth=me).json()["query"]["total"] == 1
    other = make_space(api, me, "Other")
    params_error(api.put(f"/v1/spaces/{other}", auth=me, json={"name": "Ops"}), 422, "name")
    assert api.get(f"/v1/spaces/{other}", auth=me).json()["name"] == "Other"


def test_a_composite_stream_that_does_not_parse_is_400(
    api: TestClient, db: Database, me: tuple[str, str]
) -> None:
    space_id = make_space(api, me)
    stream = {"composite": 's("cpu.load", "*"))'}
    response = api.post(
        f"/v1/spaces/{space_id}/charts", auth=me, json={"name": "C", "streams": [stream]}
    )
    params_error(response, 400, "streams.0.composite")
    message = response.json()["errors"]["params"]["streams.0.composite"]
    assert message == ["unexpected ')' after the expression at position 18"]
    assert api.get(f"/v1/spaces/{space_id}", auth=me).json()["charts"] == []
    assert rows(db, Chart) == 0


@pytest.mark.parametrize("period", [-5, 0, 1.5])
def test_put_refuses_a_period_that_is_not_whole_seconds(
    api: TestClient, db: Database, token: str, period: float
) -> None:
    body = {"type": "gauge", "period": period}
    params_error(api.put("/v1/metrics/cpu", auth=(EMAIL, token), json=body), 400, "period")
    assert_nothing_stored(api, db, token)


@pytest.mark.parametrize(
    ("composite", "field"),
    [('sum(s("cpu.load", "*")', "composite"), (None, "composite"), ('nope("x")', "composite")],
)
def test_put_of_a_composite_metric_that_does_not_parse_is_400(
    api: TestClient, db: Database, token: str, composite: str | None, field: str
) -> None:
    body = {"type": "composite", "composite": composite}
    response = api.put("/v1/metrics/cpu.total", auth=(EMAIL, token), json=body)
    params_error(response, 400, field)
    assert request_error(api.get("/v1/metrics/cpu.total", auth=(EMAIL, token)), 404)
    assert_nothing_stored(api, db, token)
