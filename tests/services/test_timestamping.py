"""Two TSAs stamp one uploaded snapshot: two tokens, both listed, both checked offline; a token
the companion does not list, or one it lists that is gone, fails the bundle."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from snapshotd.config import Settings
from snapshotd.engines.timestamping import load_roots
from snapshotd.services.manifests import verify_bundle
from tests.tsa import LocalTsa


@pytest.fixture
def tsas() -> Iterator[tuple[LocalTsa, LocalTsa]]:
    with LocalTsa("First TSA") as first, LocalTsa("Second TSA") as second:
        yield first, second


@pytest.fixture
def settings(tmp_path: Path, tsas: tuple[LocalTsa, LocalTsa]) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        egress_allow=["127.0.0.1/32"],
        job_lease_seconds=5,
        poll_interval_seconds=0.05,
        tsa_urls=[tsas[0].url, tsas[1].url],
    )


def stamped_upload(client: TestClient, auth: dict[str, str]) -> dict[str, Any]:
    location = client.post(
        "/v1.1/locations",
        headers=auth,
        json={"name": "App", "key": "app", "application_id": "a", "application_name": "A"},
    ).json()
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), "#aa3300").save(picture, format="PNG")
    uploaded = client.post(
        f"/v1.1/locations/{location['id']}/snapshots/upload",
        headers=auth,
        files={"file": ("shot.png", picture.getvalue(), "image/png")},
    ).json()["data"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(
            f"/api/v1/snapshots/{uploaded['id']}", headers=auth
        ).json()
        if len(body["metadata"].get("timestamps", [])) == 2:
            return body
        time.sleep(0.1)
    raise AssertionError(f"not stamped twice: {body}")


def without(bundle: bytes, name: str) -> bytes:
    source, out = zipfile.ZipFile(io.BytesIO(bundle)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            if item != name:
                target.writestr(item, source.read(item))
    return out.getvalue()


def test_every_tsa_stamps_and_every_token_is_checked(
    live_api: TestClient, auth: dict[str, str], tsas: tuple[LocalTsa, LocalTsa], tmp_path: Path
) -> None:
    body = stamped_upload(live_api, auth)
    assert body["metadata"]["timestamp"] == "stamped"
    assert [each["tsa"] for each in body["metadata"]["timestamps"]] == ["First TSA", "Second TSA"]
    bundle = live_api.get(f"/api/v1/snapshots/{body['id']}/bundle", headers=auth).content
    assert {"timestamp.tsr", "timestamp-2.tsr"} <= set(
        zipfile.ZipFile(io.BytesIO(bundle)).namelist()
    )

    both = tmp_path / "cas.pem"
    both.write_bytes(tsas[0].ca.read_bytes() + tsas[1].ca.read_bytes())
    verdict = verify_bundle(bundle, None, load_roots(both))
    assert verdict.ok, verdict.lines
    assert "timestamp-2.tsr: valid, timestamped by Second TSA at" in "\n".join(verdict.lines)

    only_first = verify_bundle(bundle, None, load_roots(tsas[0].ca))
    assert not only_first.ok
    assert any(line.startswith("timestamp-2.tsr: INVALID") for line in only_first.lines)

    unlisted = verify_bundle(without(bundle, "timestamps.json"), None, load_roots(both))
    assert not unlisted.ok and "not listed" in unlisted.lines[-1]
    missing = verify_bundle(without(bundle, "timestamp.tsr"), None, load_roots(both))
    assert not missing.ok and "timestamp.tsr: missing from the bundle" in missing.lines
