"""The rules setting values follow, one parser per rule.

Settings validation (`snapshotd.config`) and every consumer of a value at run time call the same
parser, so a value that passes validation works when it is used, and a value that does not is
refused once, up front: a SNAPSHOTD_* variable when a command starts, an organization's override
with a 400 or a CLI error. Each parser raises InvalidValue, with a message that reads well after
the name of what was wrong ("SNAPSHOTD_RATE_LIMITS: native: ..."): it is a ValueError for
settings validation and a 400 for an override a client or an operator sent.

The egress allowlist's rule needs to read host names as the egress guard does, so those helpers
(`normalize_host` and its kin) live here too and the guard uses them from here.

It imports only `snapshotd.errors`, so every layer, config.py included, may use it.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from snapshotd.errors import InvalidValue

SNAPSHOT_KINDS = ("page", "chart", "test_window", "upload")
MAX_RETENTION_DAYS = 36_500
MAX_RATE_WINDOW_SECONDS = 86_400 * 31

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_BUCKET = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?")
_DIGITS = re.compile(r"[0-9]+")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def split_list(text: str) -> list[str]:
    """`a, b,,c` is ["a", "b", "c"]."""
    return [part.strip() for part in text.split(",") if part.strip()]


def split_pairs(text: str) -> dict[str, str]:
    """`a=1, b=2` is {"a": "1", "b": "2"}; a part that is not KEY=VALUE is refused, not dropped."""
    pairs = {}
    for part in split_list(text):
        key, equals, value = part.partition("=")
        if not equals or not key.strip() or not value.strip():
            raise InvalidValue(f"give comma-separated KEY=VALUE pairs, not {part!r}")
        pairs[key.strip()] = value.strip()
    return pairs


@dataclass(frozen=True)
class Limit:
    """A rate limit: `count` events per `seconds`."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, value: str) -> Limit | None:
        """`"5/300"` is 5 per 300 seconds; `"0"` or `"off"` means unlimited (None)."""
        value = str(value).strip().lower()
        if value in ("0", "off", "none", ""):
            return None
        count, slash, seconds = value.partition("/")
        if not slash or not _DIGITS.fullmatch(count) or not _DIGITS.fullmatch(seconds):
            raise InvalidValue(f"a rate limit is COUNT/SECONDS (e.g. 5/300), not {value!r}")
        if int(count) < 1 or not 1 <= int(seconds) <= MAX_RATE_WINDOW_SECONDS:
            raise InvalidValue(
                f"rate limit {value!r} is out of range: COUNT is at least 1 (0 alone means no "
                f"limit) and SECONDS 1 to {MAX_RATE_WINDOW_SECONDS}"
            )
        return cls(int(count), int(seconds))

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}"


# The longest a capture may be reused: 30 days, as screenshot services commonly allow.
MAX_CACHE_TTL = 30 * 86400

# The surfaces that create snapshots, each counted on its own (docs/rate-limits.md).
RATE_LIMIT_SURFACES = (
    "native",
    "render",
    "clickwrap",
    "console",
    "kasisto",
    "librato",
    "thousandeyes_v6",
    "thousandeyes_v7",
)


def rate_limits(limits: dict[str, str]) -> dict[str, str]:
    """Rate limits per surface, each checked; the message names the surface that is wrong."""
    for surface, value in limits.items():
        if surface not in RATE_LIMIT_SURFACES:
            raise InvalidValue(
                f"unknown surface {surface!r}: use one of {', '.join(RATE_LIMIT_SURFACES)}"
            )
        try:
            Limit.parse(value)
        except InvalidValue as error:
            raise InvalidValue(f"{surface}: {error.detail}") from None
    return limits


def retention_days(days: dict[str, int]) -> dict[str, int]:
    """Days to keep snapshots, per snapshot kind."""
    unknown = sorted(set(days) - set(SNAPSHOT_KINDS))
    if unknown:
        raise InvalidValue(f"unknown snapshot kind {unknown[0]!r}")
    if any(not 1 <= value <= MAX_RETENTION_DAYS for value in days.values()):
        raise InvalidValue(f"retention is 1 to {MAX_RETENTION_DAYS} days")
    return days


def host_port(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9101` for IPv6) as the host and port to bind or connect to."""
    host, colon, port = value.rpartition(":")
    if not colon or not host or not _DIGITS.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise InvalidValue("give HOST:PORT, e.g. 127.0.0.1:9101")
    return host.strip("[]"), int(port)


def normalize_host(host: str) -> str | None:
    """A host name as a browser would look it up (percent-decoded, IDNA, lower case), or None."""
    host = unquote(host)
    if not host.isascii():
        try:
            host = unicodedata.normalize("NFKC", host).encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host.lower()


def legacy_ipv4(name: str) -> ipaddress.IPv4Address | None | bool:
    """Parse `name` as browsers do when its last label is a number: an address, or False if it
    must be rejected; None if it is an ordinary name."""
    labels = name.split(".")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    if not re.fullmatch(r"[0-9a-fx.]+", name):
        return False
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        return False


def allowlist_entry(entry: str) -> Network | str:
    """One egress allowlist entry: a network (CIDR or lone address), a host name, or `.suffix`
    (also written `*.suffix`) for every name under it."""
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    name = normalize_host(text.removeprefix("*")) or ""
    suffix = name.startswith(".")
    body = name.removeprefix(".").removesuffix(".")
    if not HOSTNAME.fullmatch(body) or legacy_ipv4(body) is not None:
        raise InvalidValue(f"invalid egress allowlist entry {entry!r}: not a CIDR or host name")
    return "." + body if suffix else body


def blob_bucket(value: str) -> tuple[str, str] | None:
    """`s3://bucket/prefix` as (bucket, prefix); None for empty (the data dir's folder)."""
    if not value:
        return None
    found = _BUCKET.fullmatch(value)
    if found is None:
        raise InvalidValue("blobs must be empty (the data dir) or s3://bucket/prefix")
    _require("boto3", "s3://", "s3")
    return found[1], found[2] or ""


def http_url(value: str) -> str:
    """An absolute http(s) URL, or empty."""
    if not value:
        return value
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as error:
        raise InvalidValue(f"{value!r} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"give an http:// or https:// URL, not {value!r}")
    return value


def origin(value: str) -> str:
    """An http(s) origin, `scheme://host[:port]` with no path, or empty; returned without a
    trailing slash and in lower case, the way a browser writes an origin."""
    if not value:
        return value
    http_url(value)
    parts = urlsplit(value)
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidValue(f"give only scheme://host[:port], with no path, not {value!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


def database_url(value: str) -> str:
    """Empty (SQLite in the data dir), a `sqlite:///` URL, or `postgresql+psycopg://`."""
    if not value:
        return value
    hint = "give postgresql+psycopg://user@host/db or sqlite:///path"
    scheme, separator, _ = value.partition("://")
    try:
        urlsplit(value).port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise InvalidValue(f"not a database URL; {hint}") from None
    if not separator or not scheme:
        raise InvalidValue(f"not a database URL; {hint}")
    if scheme == "postgresql+psycopg":
        _require("psycopg", "postgresql+psycopg://", "postgres")
    elif scheme not in ("sqlite", "sqlite+pysqlite"):
        raise InvalidValue(f"{scheme}:// is not supported; {hint}")
    return value


def _require(module: str, scheme: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise InvalidValue(f"{scheme} needs the {extra} extra: pip install 'snapshotd[{extra}]'")
