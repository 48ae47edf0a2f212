"""The layer rules of docs/architecture.md hold: the import contracts pass, routes call services
and never the parts below them, and every folder the document names exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "snapshotd"


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_routes_never_touch_the_database_the_blobs_or_the_queue() -> None:
    reach = re.compile(r"\bservices\.(db|blobs|queue)\b")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((SRC / "http").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if reach.search(line)
    ]
    assert found == []


def test_every_path_in_the_architecture_doc_exists() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    paths = set(
        re.findall(
            r"`((?:src/snapshotd/|http/|services/|engines/|store/|worker/|cli/)[\w/.]*)", doc
        )
    )
    assert paths
    for path in paths:
        full = ROOT / path if path.startswith("src/") else SRC / path
        assert full.exists(), f"docs/architecture.md names {path}, which does not exist"
