"""A page capture as clients ask for it, checked at the boundary: the one request schema of the
native API, Kasisto, Clickwrap locations, the console and the CLI. The engine gets plain
`CaptureOptions` made from it, so its own types never double as a public schema."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import babel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from snapshotd.engines.capture import CaptureOptions, Cookie
from snapshotd.errors import BadRequest


class RequestCookie(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=4096)
    domain: str | None = None
    path: str = "/"
    secure: bool = False
    http_only: bool = False


class Geolocation(BaseModel):
    """Where the page is told it is; the geolocation permission is granted with it."""

    model_config = ConfigDict(extra="forbid")

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    accuracy: float = Field(0, ge=0, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        # A query string or form field says "latitude,longitude[,accuracy]".
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",")]
            if len(parts) not in (2, 3):
                raise ValueError("give latitude,longitude or latitude,longitude,accuracy")
            return dict(zip(("latitude", "longitude", "accuracy"), parts, strict=False))
        return value


_C0_AND_SPACE = "".join(map(chr, range(0x21)))


class CaptureRequest(BaseModel):
    """What a client may ask of one page capture: the request schema of every surface that
    captures. The instance's ceilings are checked by `Snapshots.check_options`."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=8192, examples=["https://example.org/"])
    width: int = Field(1280, ge=100, le=16384)
    height: int = Field(800, ge=100, le=16384)
    full_page: bool = False
    selector: str | None = Field(None, min_length=1, max_length=1000)
    device: str | None = Field(None, max_length=100)
    format: Literal["png", "jpeg", "webp", "pdf"] = "png"
    quality: int | None = Field(None, ge=1, le=100)
    device_scale_factor: float = Field(1.0, ge=0.5, le=4.0)
    wait_until: Literal["load", "domcontentloaded", "networkidle"] = "load"
    wait_for_selector: str | None = Field(None, min_length=1, max_length=1000)
    delay_ms: int = Field(0, ge=0, le=30_000)
    hide_selectors: list[str] = Field(default_factory=list, max_length=50)
    user_agent: str | None = Field(None, max_length=1000)
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    cookies: list[RequestCookie] = Field(default_factory=list, max_length=100)
    color_scheme: Literal["light", "dark", "no-preference"] | None = None
    timeout_ms: int | None = Field(None, ge=1000, le=600_000)
    evidence: bool = True
    block_ads: bool = False
    block_trackers: bool = False
    consent: Literal["accept", "reject", "hide"] | None = None
    scroll_lazy: bool | None = Field(
        None, description="Scroll through the page first to load lazy content (default: full_page)"
    )
    freeze_animations: bool = False
    reduced_motion: bool = False
    media: Literal["screen", "print"] | None = None
    forced_colors: bool = False
    timezone: str | None = Field(None, max_length=64, examples=["Europe/Paris"])
    locale: str | None = Field(None, max_length=64, examples=["fr-FR"])
    geolocation: Geolocation | None = None
    fail_on_status: list[int | str] = Field(
        default_factory=list, max_length=50, examples=[[404, "500-599"]]
    )

    @field_validator("url")
    @classmethod
    def _trimmed(cls, url: str) -> str:
        # What a browser does to a URL before anything else: leading and trailing spaces and
        # control characters go, so the one stored is the one navigated to.
        trimmed = url.strip(_C0_AND_SPACE)
        if not trimmed:
            raise ValueError("a URL is required; this one is only spaces or control characters")
        return trimmed

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is not None and name not in _time_zones():
            raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris")
        return name

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, tag: str | None) -> str | None:
        if tag is None:
            return None
        try:
            babel.Locale.parse(tag, sep="-")
        except (ValueError, babel.UnknownLocaleError):
            raise ValueError(
                f"unknown locale {tag!r}; use a BCP 47 tag such as en-US or fr-FR"
            ) from None
        return tag

    @field_validator("fail_on_status", mode="before")
    @classmethod
    def _status_list(cls, value: Any) -> Any:
        # A query string or form field says "404,500-599".
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [
                part.strip() if isinstance(part, str) else part
                for entry in value
                for part in (entry.split(",") if isinstance(entry, str) else [entry])
                if not isinstance(part, str) or part.strip()
            ]
        return value

    @field_validator("fail_on_status")
    @classmethod
    def _status_ranges(cls, entries: list[int | str]) -> list[int | str]:
        for entry in entries:
            status_range(entry)
        return entries

    def options(self) -> CaptureOptions:
        """The engine's options for this request."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        geolocation = self.geolocation
        return CaptureOptions(
            **{
                **fields,
                "hide_selectors": tuple(self.hide_selectors),
                "headers": dict(self.headers),
                "cookies": tuple(Cookie(**cookie.model_dump()) for cookie in self.cookies),
                "scroll_lazy": self.full_page if self.scroll_lazy is None else self.scroll_lazy,
                "geolocation": None
                if geolocation is None
                else (geolocation.latitude, geolocation.longitude, geolocation.accuracy),
                "fail_on_status": tuple(status_range(entry) for entry in self.fail_on_status),
            }
        )


def status_range(entry: int | str) -> tuple[int, int]:
    """One `fail_on_status` entry, 404 or "404" or "500-599", as an inclusive range."""
    text = str(entry).strip()
    low, dash, high = text.partition("-")
    try:
        bounds = (int(low), int(high) if dash else int(low))
    except ValueError:
        raise ValueError(f"{entry!r} is not a status code or a range such as 500-599") from None
    if not (100 <= bounds[0] <= bounds[1] <= 599):
        raise ValueError(f"{entry!r} is not within 100-599 with the lower code first")
    return bounds


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


# What makes a real-world page show what a person sees; every front end that captures takes these.
PAGE_OPTIONS = (
    "block_ads",
    "block_trackers",
    "consent",
    "scroll_lazy",
    "freeze_animations",
    "reduced_motion",
    "media",
    "forced_colors",
    "color_scheme",
    "timezone",
    "locale",
    "geolocation",
    "fail_on_status",
    "hide_selectors",
    "user_agent",
)

FLAGS = tuple(
    name
    for name, field in CaptureRequest.model_fields.items()
    if field.annotation in (bool, bool | None)
)
# Fields whose name may repeat in a query string; each is also read from one comma-separated value,
# except the selectors, which contain commas of their own.
REPEATED = ("hide_selectors", "fail_on_status")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


def flag(name: str, value: str) -> bool:
    """A flag written as text. A word that is neither true nor false is refused, not read as
    false, so that a misspelt `full_page=ture` is not a silent no."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadRequest(f"{name}: {value!r} is neither true nor false", field=name)


def fields_from_text(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A capture request's fields from a query string or a form, where every value is text: flags
    are read by `flag`, repeated names make a list, and the location is
    "latitude,longitude[,accuracy]"."""
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name in REPEATED:
            fields.setdefault(name, []).append(value)
        elif name in FLAGS:
            fields[name] = flag(name, value)
        else:
            fields[name] = value
    return fields


def parse_request(raw: Mapping[str, Any]) -> CaptureRequest:
    """A capture request from a dialect's fields; the first problem is a BadRequest naming it."""
    try:
        return CaptureRequest.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        message = first["msg"].removeprefix("Value error, ")
        raise BadRequest(f"{where}: {message}", field=where) from None
