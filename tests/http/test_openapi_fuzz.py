"""Schemathesis over the app's own OpenAPI: every operation, signed in as an admin (a Bearer token,
which every surface takes), with valid and invalid inputs. No answer may be a server error, an
invalid input must be refused, and every answer (status, media type, body) must be one the
document lists, so that clients generated from it can type every answer.

The run is derandomized (the same cases every time, so a failure reproduces) and bounded: about
two minutes on two cores. Captures are real jobs run by a worker without a browser."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
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


class PaintingWorker(Worker):
    """A worker that runs jobs as `snapshotd serve` does, minus the browser and the guard, so the
    capture routes that wait for their image answer within the example."""

    async def run(self) -> None:
        self._engine = _PaintingEngine()  # type: ignore[assignment]
        self.pool = SimpleNamespace(stats=SimpleNamespace(restarts=0))  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        self._work_queued = asyncio.Event()
        unsubscribe = self.queue.db.on_enqueued(self._wake)
        self.ready.set()
        try:
            await self._claim_loop()
        finally:
            unsubscribe()
            self.ready.clear()
            self._loop = None


@pytest.fixture
def fuzz_app(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[FastAPI]:
    worker = PaintingWorker(settings, db, blobs)
    threads = WorkerThreads([worker])
    threads.start()
    app = create_app(settings, db=db, blobs=blobs, worker=worker)
    with TestClient(app):
        yield app
    threads.stop(timeout=30)


@pytest.fixture
def fuzz_schema(fuzz_app: FastAPI, token: str) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {token}"},
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES_PER_OPERATION,
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
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app, config=config)


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@pytest.mark.timeout(600)
@schema.parametrize()
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate()
