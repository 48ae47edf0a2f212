"""Schemathesis over the app's own OpenAPI: every operation, signed in as an admin (a Bearer token,
which every surface takes), with valid and invalid inputs. No answer may be a server error, an
invalid input must be refused, and every answer (status, media type, body) must be one the
document lists, so that clients generated from it can type every answer.

It runs twice: once with every value generated, ids included (mostly 404s past validation), and
once with each path naming something that exists, so that handlers run to the end. Both are
derandomized (the same cases every time, so a failure reproduces) and bounded: about two minutes
together on two cores. Captures are real jobs, run by a worker without a browser."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from snapshotd.config import Settings
from snapshotd.engines.capture import (
    MEDIA_TYPES,
    CapturedArtifact,
    CaptureOptions,
    CaptureResult,
)
from snapshotd.http.app import create_app
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.worker import Worker, WorkerThreads

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
# Per operation, in the fuzzing phase; the coverage and examples phases add their own cases.
EXAMPLES_PER_OPERATION = 100
# With every path naming something that exists (the ids are fixed, so fewer cases differ).
SEEDED_EXAMPLES = 40


class _PaintingEngine:
    """Stands in for Chromium: every capture is a small square in the format asked for, at once."""

    async def capture(self, options: CaptureOptions) -> CaptureResult:
        if options.format == "pdf":
            art = CapturedArtifact("pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")
        else:
            out = io.BytesIO()
            Image.new("RGB", (4, 4), (200, 30, 30)).save(out, options.format.upper())
            art = CapturedArtifact("image", out.getvalue(), MEDIA_TYPES[options.format], 4, 4)
        return CaptureResult([art], {"final_url": options.url})


@asynccontextmanager
async def painting_stack(settings: Settings) -> AsyncIterator[Any]:
    """The capture stack a worker starts, minus the browser and the guard, so the capture routes
    that wait for their image answer within the example."""
    pool = SimpleNamespace(stats=SimpleNamespace(restarts=0))
    yield SimpleNamespace(engine=_PaintingEngine(), pool=pool, guard=None, http=None)


class PaintingWorker(Worker):
    """A worker as `snapshotd serve` runs it, on the painting stack. It schedules no synthetic
    test: a round would probe whatever URL the fuzzer gave the test."""

    def _schedule(self) -> str:
        return ""


@pytest.fixture
def fuzz_app(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[FastAPI]:
    worker = PaintingWorker(settings, db, blobs, stack=painting_stack)
    threads = WorkerThreads([worker])
    threads.start()
    app = create_app(settings, db=db, blobs=blobs, worker=worker)
    with TestClient(app):
        yield app
    threads.stop(timeout=30)


def _schema(app: FastAPI, token: str, examples: int, parameters: dict[str, str]) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {token}"},
            "parameters": parameters,
            "generation": {
                "mode": "all",
                "max-examples": examples,
                "no-shrink": True,
                "database": "none",
                "deterministic": True,
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECKS},
            },
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


def _world(app: FastAPI, token: str) -> dict[str, str]:
    """One of each thing a path can name, so that the seeded run gets past 404: a location with
    an uploaded snapshot, a metric with a space and a chart, and a test on an agent."""
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {token}"}

    def made(method: str, path: str, **kwargs: Any) -> Any:
        answer = client.request(method, path, headers=auth, **kwargs)
        assert answer.status_code in (201, 202), answer.text
        return answer.json() if answer.content else None

    page = {"key": "terms", "name": "Terms", "capture_url": "https://shop.example/terms"}
    location = made("POST", "/v1.1/locations", json=page)["id"]
    image = io.BytesIO()
    Image.new("RGB", (40, 30), (20, 40, 60)).save(image, "PNG")
    upload = f"/v1.1/locations/{location}/snapshots/upload"
    snapshot = made("POST", upload, files={"file": ("s.png", image.getvalue(), "image/png")})
    now = int(time.time())
    points = [{"name": "cpu.load", "value": i % 7, "time": now - 60 * i} for i in range(30)]
    made("POST", "/v1/measurements", json={"tags": {"host": "web-1"}, "measurements": points})
    space = made("POST", "/v1/spaces", json={"name": "Production"})["id"]
    chart = {"name": "CPU", "type": "line", "streams": [{"metric": "cpu.load"}]}
    chart_id = made("POST", f"/v1/spaces/{space}/charts", json=chart)["id"]
    agent = app.state.services.agents.register("host-a", location="Local", country_id="")
    test = {
        "testName": "Shop",
        "url": "http://127.0.0.1:9/",
        "interval": 300,
        "agents": [{"agentId": str(agent.id)}],
    }
    test_id = made("POST", "/v7/tests/http-server", json=test)["testId"]
    return {
        "snapshot_id": snapshot["data"]["id"],
        "location_id": location,
        "space_id": str(space),
        "chart_id": str(chart_id),
        "test_type": "http-server",
        "test_id": str(test_id),
        "name": "cpu.load",
    }


@pytest.fixture
def fuzz_schema(fuzz_app: FastAPI, token: str) -> Any:
    return _schema(fuzz_app, token, EXAMPLES_PER_OPERATION, {})


@pytest.fixture
def seeded_schema(fuzz_app: FastAPI, token: str) -> Any:
    return _schema(fuzz_app, token, SEEDED_EXAMPLES, _world(fuzz_app, token))


fuzzed = schemathesis.pytest.from_fixture("fuzz_schema")
# Deleting the things every other operation names would leave it nothing but 404s; the unseeded
# run fuzzes the deletes.
seeded = schemathesis.pytest.from_fixture("seeded_schema").exclude(method="DELETE")


@pytest.mark.timeout(600)
@fuzzed.parametrize()
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate()


@pytest.mark.timeout(600)
@seeded.parametrize()
def test_every_operation_on_things_that_exist_answers_as_documented(
    case: schemathesis.Case,
) -> None:
    case.call_and_validate()
