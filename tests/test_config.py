"""Settings: one parser per rule, shared by validation and by what uses each value at run time."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from snapshotd.config import Settings, SettingsError, load_settings
from snapshotd.engines.egress import EgressPolicy
from snapshotd.errors import BadRequest
from snapshotd.rules import blob_bucket, host_port
from snapshotd.services.accounts import ensure_org
from snapshotd.services.org_settings import OrgSettings
from snapshotd.services.ratelimit import CreationLimits, Limit
from snapshotd.store.db import Database

BAD = [
    ("SNAPSHOTD_RATE_LIMITS", "native=5/0"),
    ("SNAPSHOTD_RATE_LIMITS", "native=0/60"),
    ("SNAPSHOTD_RATE_LIMITS", "native=lots"),
    ("SNAPSHOTD_RATE_LIMITS", "native"),
    ("SNAPSHOTD_RATE_LIMITS", "native=5/9999999"),
    ("SNAPSHOTD_RATE_LIMITS", "nativ=5/60"),
    ("SNAPSHOTD_RETENTION_DAYS", "page=0"),
    ("SNAPSHOTD_RETENTION_DAYS", "movie=3"),
    ("SNAPSHOTD_RETENTION_DAYS", "page=soon"),
    ("SNAPSHOTD_EGRESS_ALLOW", "10.0.0.0/33"),
    ("SNAPSHOTD_EGRESS_ALLOW", "10.0.0.0/8,not a host!"),
    ("SNAPSHOTD_WORKER_METRICS_ADDRESS", "9101"),
    ("SNAPSHOTD_WORKER_METRICS_ADDRESS", "127.0.0.1:99999"),
    ("SNAPSHOTD_BLOBS", "s3://B"),
    ("SNAPSHOTD_BLOBS", "/var/blobs"),
    ("SNAPSHOTD_DATABASE_URL", "nonsense"),
    ("SNAPSHOTD_DATABASE_URL", "mysql://db/snapshotd"),
    ("SNAPSHOTD_BASE_URL", "snap.example"),
    ("SNAPSHOTD_S3_ENDPOINT_URL", "ftp://s3.example"),
    ("SNAPSHOTD_WORKERS", "-1"),
    ("SNAPSHOTD_ACCESS_LOG", "maybe"),
    ("SNAPSHOTD_POLL_INTERVAL_SECONDS", "0"),
    ("SNAPSHOTD_CHROMIUM_SANDBOX", "sometimes"),
]


@pytest.mark.parametrize(("variable", "value"), BAD)
def test_a_wrong_value_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"{variable}: ") and "\n" not in message


def test_every_wrong_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAPSHOTD_RATE_LIMITS", "native=5/0")
    monkeypatch.setenv("SNAPSHOTD_WORKERS", "lots")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "SNAPSHOTD_RATE_LIMITS: native: " in str(refused.value)
    assert "SNAPSHOTD_WORKERS: " in str(refused.value)


def test_good_values_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in {
        "SNAPSHOTD_RATE_LIMITS": " native=100/60, kasisto=off,librato=0 ",
        "SNAPSHOTD_RETENTION_DAYS": "page=90,upload=365",
        "SNAPSHOTD_EGRESS_ALLOW": "10.20.0.0/16, intranet.example,.corp.example,::1",
        "SNAPSHOTD_WORKER_METRICS_ADDRESS": "[::1]:9101",
        "SNAPSHOTD_BLOBS": "s3://snapshots/prod",
        "SNAPSHOTD_DATABASE_URL": "postgresql+psycopg://snapshotd@db.internal/snapshotd",
        "SNAPSHOTD_BASE_URL": "https://snap.example",
    }.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings()
    assert settings.rate_limits == {"native": "100/60", "kasisto": "off", "librato": "0"}
    assert settings.retention_days == {"page": 90, "upload": 365}
    assert settings.egress_allow == ["10.20.0.0/16", "intranet.example", ".corp.example", "::1"]


CANDIDATES = {
    "rate_limits": ["5/0", "0/60", "5/300", "0", "off", "5/2678400", "5/2678401", "lots", "5/ 3"],
    "egress_allow": ["10.0.0.0/8", "10.0.0.0/33", "*.corp.example", "999.1.1.1", "a..b", "::1"],
    "worker_metrics_address": ["127.0.0.1:9101", "[::1]:9101", ":80", "host:0", "host:http"],
    "blobs": ["s3://bucket", "s3://bucket/a/b", "s3://B", "s3:/bucket", "s3://x"],
}


@pytest.mark.parametrize(
    ("field", "value"), [(field, value) for field, values in CANDIDATES.items() for value in values]
)
def test_what_passes_validation_works_at_run_time(field: str, value: str) -> None:
    given: dict[str, object] = {
        "rate_limits": {"native": value},
        "egress_allow": [value],
    }.get(field, value)
    try:
        settings = Settings.model_validate({field: given})
    except ValueError:
        return  # refused up front, named
    CreationLimits(settings.rate_limits)
    EgressPolicy(settings.egress_allow)
    if settings.worker_metrics_address:
        host_port(settings.worker_metrics_address)
    blob_bucket(settings.blobs)


def test_a_limit_means_the_same_everywhere() -> None:
    limits = CreationLimits({"native": "5/300", "kasisto": "off"})
    assert limits.limit_for(None, "native") == Limit(5, 300)
    assert limits.limit_for(None, "kasisto") is None


def test_organization_overrides_follow_the_same_rules(db: Database) -> None:
    with db.session() as session:
        org_id = ensure_org(session, "acme").id
    overrides = OrgSettings(db)
    with pytest.raises(BadRequest, match="native: rate limit '5/0' is out of range") as refused:
        overrides.set_rate_limits(org_id, {"native": "5/0"}, actor="operator")
    assert refused.value.status == 400 and refused.value.field == "rate_limits"
    with pytest.raises(BadRequest, match="1 to 36500 days"):
        overrides.set_retention(org_id, {"page": 0}, actor="operator")
    assert overrides.set_rate_limits(org_id, {"native": "2/60"}, actor="operator").rate_limits == {
        "native": "2/60"
    }


def test_an_override_through_the_api_is_a_clear_400(api: TestClient, auth: dict[str, str]) -> None:
    refused = api.patch("/api/v1/org", headers=auth, json={"retention_days": {"page": 0}})
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["field"] == "retention_days"
    assert problem["detail"] == "retention is 1 to 36500 days"
