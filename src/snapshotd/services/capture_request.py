"""A page capture as clients ask for it, checked at the boundary: the one request schema of the
native API, Kasisto, Clickwrap locations, the console and the CLI. The engine gets plain
`CaptureOptions` made from it, so its own types never double as a public schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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

    @field_validator("url")
    @classmethod
    def _trimmed(cls, url: str) -> str:
        # What a browser does to a URL before anything else: leading and trailing spaces and
        # control characters go, so the one stored is the one navigated to.
        trimmed = url.strip(_C0_AND_SPACE)
        if not trimmed:
            raise ValueError("a URL is required; this one is only spaces or control characters")
        return trimmed

    def options(self) -> CaptureOptions:
        """The engine's options for this request."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return CaptureOptions(
            **{
                **fields,
                "hide_selectors": tuple(self.hide_selectors),
                "headers": dict(self.headers),
                "cookies": tuple(Cookie(**cookie.model_dump()) for cookie in self.cookies),
            }
        )


def parse_request(raw: Mapping[str, Any]) -> CaptureRequest:
    """A capture request from a dialect's fields; the first problem is a BadRequest naming it."""
    try:
        return CaptureRequest.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}", field=where) from None
