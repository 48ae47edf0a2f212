"""The exception tree: small, drawn in its docstring, free of store and driver imports."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

from fastapi.testclient import TestClient

import snapshotd
from snapshotd import errors
from snapshotd.errors import SnapshotdError


def subclasses(kind: type[SnapshotdError]) -> set[type[SnapshotdError]]:
    found = set(kind.__subclasses__())
    for each in list(found):
        found |= subclasses(each)
    return found


def test_the_tree_imports_no_store_driver_or_web_framework() -> None:
    probe = (
        "import sys, snapshotd.errors, snapshotd.rules, snapshotd.config\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    for heavy in ("sqlalchemy", "sqlite3", "psycopg", "botocore", "fastapi", "starlette"):
        assert heavy not in loaded


def test_every_error_is_in_the_tree_and_drawn_in_its_docstring() -> None:
    for info in pkgutil.walk_packages(snapshotd.__path__, "snapshotd."):
        if not info.name.endswith("__main__") and ".migrations" not in info.name:
            importlib.import_module(info.name)
    doc = errors.__doc__ or ""
    for kind in subclasses(SnapshotdError):
        if kind.__module__ == "snapshotd.http.problems":
            continue  # a framework refusal with a status the tree does not name
        assert kind.__module__ == "snapshotd.errors", f"{kind.__qualname__} is outside the tree"
        assert f" {kind.__name__}" in doc, f"{kind.__name__} is missing from the drawing"
        assert "status" not in vars(kind) or f"{kind.__name__} ({kind.status})" in doc


def test_what_the_framework_refuses_is_rendered_as_before(
    api: TestClient, auth: dict[str, str]
) -> None:
    missing = api.get("/api/v1/nowhere", headers=auth)
    assert (missing.status_code, missing.json()["title"]) == (404, "Not found")
    wrong_method = api.delete("/api/v1/snapshots", headers=auth)
    assert (wrong_method.status_code, wrong_method.json()["title"]) == (405, "Method not allowed")
    invalid = api.post("/api/v1/snapshots", headers=auth, json={"url": 5})
    assert invalid.status_code == 400
    assert (invalid.json()["title"], invalid.json()["field"]) == ("Invalid request", "url")
    assert invalid.headers["content-type"] == "application/problem+json"
