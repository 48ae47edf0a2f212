"""All of snapshotd's settings, read from SNAPSHOTD_* environment variables.

Every field has a default and a description; `docs/settings.md` lists them and a test keeps the two
in step. Nothing here is built at import time: the CLI or a test constructs `Settings()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from snapshotd import rules

# Where `make deps` installs autoconsent in a source checkout (src/snapshotd/config.py → the root).
DEFAULT_AUTOCONSENT_DIR = (
    Path(__file__).resolve().parents[2] / "node_modules" / "@duckduckgo" / "autoconsent"
)
# And the ReplayWeb.page viewer, which the console and share links serve at /replay/.
DEFAULT_REPLAY_VIEWER_DIR = Path(__file__).resolve().parents[2] / "node_modules" / "replaywebpage"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SNAPSHOTD_", extra="ignore")

    data_dir: Path = Field(
        Path("data"), description="Folder for the SQLite database and the artifact store."
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the metadata database; empty means SQLite in the data dir. "
        "Use postgresql+psycopg://user@host/db for PostgreSQL.",
    )
    base_url: str = Field(
        "",
        description="Public base URL used in links the API hands out (e.g. https://snap.example); "
        "empty means the URL of the incoming request.",
    )
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs and host names that captures may reach even though they "
        "are loopback, private or link-local. Empty by default: only global addresses.",
    )
    workers: int = Field(
        1, ge=0, le=64, description="Worker threads that `snapshotd serve` runs (0: API only)."
    )
    access_log: bool = Field(
        True,
        description="`snapshotd serve` logs one line per HTTP request. It costs about a quarter "
        "of an API process's capacity on the busiest reads: turn it off where the load balancer "
        "logs requests.",
    )
    worker_concurrency: int = Field(
        2, ge=1, le=16, description="Captures one worker runs at once, each in its own context."
    )
    job_lease_seconds: int = Field(
        30,
        ge=5,
        le=3600,
        description="How long a claimed job is held before another worker may take it.",
    )
    job_max_attempts: int = Field(
        3, ge=1, le=20, description="Attempts before a job is failed for good."
    )
    queue_max_length: int = Field(
        1000, ge=1, description="Queued jobs beyond which new snapshots are refused with 429."
    )
    worker_metrics_address: str = Field(
        "",
        description="HOST:PORT where `snapshotd worker` serves its Prometheus metrics (capture "
        "times and outcomes, browser relaunches) at /metrics; empty: none. Bind 127.0.0.1 for a "
        "scraper on the same machine, or the machine's private address for one elsewhere.",
    )
    poll_interval_seconds: float = Field(
        0.2,
        gt=0,
        le=30,
        description="How often an idle worker looks for new jobs. Workers are also woken at once "
        "by jobs queued in their own process and, on PostgreSQL, by LISTEN/NOTIFY from any "
        "process.",
    )
    chromium_path: str = Field(
        "/usr/lib/chromium/chromium-headless-shell",
        description="Chromium binary driven by Playwright (the headless shell is ~2x faster).",
    )
    filter_lists_dir: Path = Field(
        Path("/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist"),
        description="Folder holding easylist.txt and easyprivacy.txt, the lists behind the "
        "block_ads and block_trackers capture options (Debian's webext-ublock-origin-chromium "
        "installs them here). Read once per worker process, on the first capture that blocks.",
    )
    chromium_sandbox: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Chromium's own sandbox around the pages it renders. auto: on wherever "
        "Chromium can have it (a user other than root, user namespaces allowed), else off with "
        "a warning at start; on: refuse to capture without it; off: never.",
    )
    autoconsent_dir: str = Field(
        "",
        description="Folder of the @duckduckgo/autoconsent npm package (its rules and content "
        "script answer consent pop-ups for the `consent` capture option); empty means "
        "node_modules/@duckduckgo/autoconsent in the source checkout, where `make deps` puts it. "
        "Without it, captures that ask for `consent` fail saying so.",
    )
    replay_viewer_dir: str = Field(
        "",
        description="Folder of the replaywebpage npm package (its `ui.js` and `sw.js` show a "
        "capture's WACZ archive as a browsable page); empty means node_modules/replaywebpage "
        "in the source checkout, where `make deps` puts it. Without it, replay pages say the "
        "viewer is not installed.",
    )
    replay_origin: str = Field(
        "",
        description="Origin of a host name of its own on which archived pages are replayed "
        "(e.g. https://replay.snap.example), pointed at this same server; it must differ in "
        "host from SNAPSHOTD_BASE_URL. The replayed page's scripts run there, where no session "
        "cookie reaches. Empty means replay is not offered (the WACZ still downloads).",
    )
    browser_recycle_after: int = Field(
        500, ge=1, description="Captures after which a worker relaunches its browser."
    )
    capture_timeout_ms: int = Field(
        30_000,
        ge=1000,
        description="Default navigation + capture timeout when a request names none.",
    )
    max_timeout_ms: int = Field(
        90_000,
        ge=1000,
        description="Ceiling on a request's timeout_ms; a request above it is refused.",
    )
    max_width: int = Field(
        4096, ge=100, description="Largest viewport width a request may ask for."
    )
    max_height: int = Field(
        4096, ge=100, description="Largest viewport height a request may ask for."
    )
    max_full_page_height: int = Field(
        16_384,
        ge=100,
        description="Full-page captures are cut at this many CSS pixels and marked truncated.",
    )
    max_navigations: int = Field(
        20, ge=1, description="Document navigations (redirects, reloads) allowed in one capture."
    )
    wacz_max_bytes: int = Field(
        52_428_800,
        ge=0,
        le=1_073_741_824,
        description="Response and request bodies a capture's web archive (WACZ) keeps, in bytes; "
        "past it, exchanges are archived with their headers only and the bodies left out are "
        "listed.",
    )
    max_body_bytes: int = Field(
        4_194_304, ge=1024, description="Largest request body the API accepts (413 above)."
    )
    snapshot_ttl_days: int = Field(
        30, ge=1, description="Days a snapshot and its artifacts are kept before they expire."
    )
    retention_days: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description="Per-kind retention overriding snapshot_ttl_days, e.g. `upload=365,chart=7`; "
        "an organization's own setting overrides both.",
    )
    rate_limits: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Snapshot creations allowed per organization and surface, as "
        "`surface=COUNT/SECONDS` pairs, e.g. `native=600/60,thousandeyes_v7=5/300` (`0`: no "
        "limit). Unnamed surfaces use the `native` limit. Defaults: native 600/60, "
        "thousandeyes_v7 5/300, thousandeyes_v6 10/3600.",
    )
    token_requests_per_minute: int = Field(
        6000,
        ge=0,
        description="Requests one API token may make per minute to one API process (a token "
        "bucket; 0: no limit). Protects the API from a runaway client.",
    )
    capture_cache_ttl: int = Field(
        86400,
        ge=0,
        le=rules.MAX_CACHE_TTL,
        description="Seconds a finished capture answers an identical request again, on the routes "
        "that answer with the picture (GET /api/v1/capture, render links, Kasisto) when the "
        "request names no `cache_ttl`; an organization's own setting overrides it (0: never "
        "reuse). POST /api/v1/snapshots reuses only when its body asks.",
    )
    render_key_rate_limit: str = Field(
        "600/60",
        description="Requests one render key may make to one API process, as COUNT/SECONDS (`0`: "
        "no limit); a key's own limit overrides it. Cache hits count too: the budget protects "
        "the API, the organization's creation limit meters captures.",
    )
    console_session_hours: int = Field(
        12,
        ge=1,
        le=720,
        description="How long a web console sign-in lasts, however much it is used; never longer "
        "than the token it was made with.",
    )
    share_misses_per_minute: int = Field(
        60,
        ge=0,
        description="Unknown share links or failed sign-ins one client address may try per "
        "minute before it is answered 429 (0: no limit).",
    )
    sweep_interval_seconds: int = Field(
        300,
        ge=1,
        description="How often workers delete expired snapshots, links and their blobs.",
    )
    blob_grace_seconds: int = Field(
        600,
        ge=0,
        description="A blob written this recently is never deleted by the sweeper, so a capture "
        "storing the same bytes at that moment cannot lose them.",
    )
    blobs: str = Field(
        "",
        description="Where artifacts are kept: empty means the blobs folder in the data dir; "
        "s3://bucket/prefix an S3-compatible bucket (install the `s3` extra).",
    )
    s3_endpoint_url: str = Field(
        "", description="S3 endpoint, e.g. https://s3.eu-central-1.amazonaws.com; empty: AWS."
    )
    s3_access_key_id: str = Field("", description="S3 access key id; empty: boto3's defaults.")
    s3_secret_access_key: str = Field(
        "", description="S3 secret access key; empty: boto3's defaults (environment, profile)."
    )
    s3_region: str = Field("us-east-1", description="S3 region name.")
    s3_redirect_downloads: bool = Field(
        True,
        description="With blobs in S3, answer artifact downloads with a redirect to a presigned "
        "bucket URL, valid no longer than the snapshot or link (at most 5 minutes for signed-in "
        "downloads), so the bytes bypass the API; turn off when clients cannot reach the bucket.",
    )
    manifest_key_file: str = Field(
        "",
        description="PEM file of the Ed25519 key that signs snapshot manifests (make one with "
        "`snapshotd keygen FILE`; serve and worker refuse to start when it is missing); empty "
        "means keys/manifest-ed25519.pem in the data dir, created on first use. Machines of one "
        "deployment must share it.",
    )
    max_upload_bytes: int = Field(
        4_194_304, ge=1024, description="Largest image a customer may upload as a snapshot."
    )
    max_upload_pixels: int = Field(
        40_000_000,
        ge=10_000,
        description="Most pixels (width x height) an uploaded image may have; larger ones, "
        "decompression bombs included, are refused before they are decoded.",
    )
    agent_name: str = Field(
        "",
        description="Name this host's workers register as a synthetic-test agent under; empty "
        "means the host name.",
    )
    agent_location: str = Field(
        "Local", description="Location shown for this host's agent (e.g. `Frankfurt, DE`)."
    )
    chart_width: int = Field(800, ge=200, le=4000, description="Chart snapshot width in pixels.")
    chart_height: int = Field(400, ge=150, le=3000, description="Chart snapshot height in pixels.")
    chart_max_duration_seconds: int = Field(
        31 * 86400,
        ge=60,
        description="Longest window a chart snapshot may cover (a longer `duration` is a 400).",
    )
    measurement_retention_days: int = Field(
        90,
        ge=0,
        description="Days measurements are kept; the sweeper deletes older ones (0: keep "
        "them forever).",
    )
    rollup_1m_retention_days: int = Field(
        180,
        ge=0,
        description="Days the 1-minute roll-ups of measurements are kept (0: forever); at least "
        "as long as the measurements themselves (a shorter value is raised to that).",
    )
    rollup_5m_retention_days: int = Field(
        365,
        ge=0,
        description="Days the 5-minute roll-ups of measurements are kept (0: forever); at least "
        "as long as the 1-minute ones (a shorter value is raised to that).",
    )
    rollup_15m_retention_days: int = Field(
        730,
        ge=0,
        description="Days the 15-minute roll-ups of measurements are kept (0: forever); at least "
        "as long as the 5-minute ones (a shorter value is raised to that).",
    )
    rollup_1h_retention_days: int = Field(
        1825,
        ge=0,
        description="Days the 1-hour roll-ups of measurements are kept (0: forever); at least "
        "as long as the 15-minute ones (a shorter value is raised to that).",
    )
    max_measurements_per_request: int = Field(
        10_000,
        ge=1,
        description="Measurements one POST to /v1/metrics or /v1/measurements may carry (413 "
        "above).",
    )
    webhook_max_attempts: int = Field(
        6, ge=1, le=20, description="Deliveries tried for a callback_url before giving up."
    )
    tsa_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated URLs of RFC 3161 time-stamping authorities; each snapshot's "
        "signed manifest is stamped by every one, after the capture. Empty: no timestamps. The "
        "requests go through the egress policy, so a TSA on a private address must also be in "
        "SNAPSHOTD_EGRESS_ALLOW.",
    )
    tsa_ca_file: str = Field(
        "",
        description="PEM bundle of the CA certificates a TSA's token must chain to; a token "
        "that does not is refused and asked for again. Empty: a token is checked against the "
        "certificates it carries.",
    )
    tsa_max_attempts: int = Field(
        30,
        ge=1,
        le=100,
        description="Requests made to one TSA for one snapshot before giving up; they are spaced "
        "by the queue's backoff (doubling, at most a minute), so 30 covers about 25 minutes of a "
        "TSA being down.",
    )

    @field_validator("blobs")
    @classmethod
    def _check_blobs(cls, value: str) -> str:
        rules.blob_bucket(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        return rules.database_url(value)

    @field_validator("base_url", "s3_endpoint_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return rules.http_url(value)

    @field_validator("replay_origin")
    @classmethod
    def _check_replay_origin(cls, value: str) -> str:
        return rules.origin(value)

    @model_validator(mode="after")
    def _replay_host_of_its_own(self) -> Settings:
        hosts = {urlsplit(url).hostname for url in (self.replay_origin, self.base_url) if url}
        if self.replay_origin and self.base_url and len(hosts) == 1:
            raise ValueError(
                "SNAPSHOTD_REPLAY_ORIGIN needs a host name other than SNAPSHOTD_BASE_URL's: "
                "browsers share cookies between the ports of one host"
            )
        return self

    @field_validator("render_key_rate_limit")
    @classmethod
    def _check_render_limit(cls, value: str) -> str:
        rules.Limit.parse(value)
        return value

    @field_validator("worker_metrics_address")
    @classmethod
    def _check_metrics_address(cls, value: str) -> str:
        if value:
            rules.host_port(value)
        return value

    @field_validator("tsa_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        return rules.split_list(value) if isinstance(value, str) else value

    @field_validator("tsa_urls")
    @classmethod
    def _check_tsa_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url:
                raise ValueError("a TSA URL is empty")
            rules.http_url(url)
        return value

    @field_validator("egress_allow", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        return rules.split_list(value) if isinstance(value, str) else value

    @field_validator("egress_allow")
    @classmethod
    def _check_allowlist(cls, value: list[str]) -> list[str]:
        for entry in value:
            rules.allowlist_entry(entry)
        return value

    @field_validator("retention_days", "rate_limits", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        return rules.split_pairs(value) if isinstance(value, str) else value

    @field_validator("retention_days")
    @classmethod
    def _check_retention(cls, value: dict[str, int]) -> dict[str, int]:
        return rules.retention_days(value)

    @field_validator("rate_limits")
    @classmethod
    def _check_limits(cls, value: dict[str, str]) -> dict[str, str]:
        return rules.rate_limits(value)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'snapshotd.db').resolve()}"

    @property
    def resolved_autoconsent_dir(self) -> Path:
        return Path(self.autoconsent_dir) if self.autoconsent_dir else DEFAULT_AUTOCONSENT_DIR

    @property
    def resolved_replay_viewer_dir(self) -> Path:
        return Path(self.replay_viewer_dir) if self.replay_viewer_dir else DEFAULT_REPLAY_VIEWER_DIR

    @property
    def rollup_retention_days(self) -> dict[int, int]:
        """Days each stored roll-up is kept, by its resolution in seconds (0: forever). A read
        takes whole buckets from the coarsest roll-up that serves it, so each is kept at least as
        long as the finer data beneath it: a shorter setting is raised to that."""
        kept, floor = {}, self.measurement_retention_days
        for resolution, days in (
            (60, self.rollup_1m_retention_days),
            (300, self.rollup_5m_retention_days),
            (900, self.rollup_15m_retention_days),
            (3600, self.rollup_1h_retention_days),
        ):
            floor = 0 if 0 in (days, floor) else max(days, floor)
            kept[resolution] = floor
        return kept

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"


class SettingsError(ValueError):
    """Environment variables that do not make valid settings, named in plain words."""


def load_settings() -> Settings:
    """The settings from the environment; SettingsError says which variables are wrong and how."""
    try:
        return Settings()
    except ValidationError as error:
        problems = []
        for each in error.errors():
            where = [str(part) for part in each["loc"]]
            name = "SNAPSHOTD_" + where[0].upper() if where else "settings"
            key = "".join(f"{part}: " for part in where[1:])
            problems.append(f"{name}: {key}{each['msg'].removeprefix('Value error, ')}")
        raise SettingsError("; ".join(problems)) from None
