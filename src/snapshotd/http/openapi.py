"""The error answers in the OpenAPI document: for each operation, the statuses it really answers,
each with its surface's own error shape and media type, so that a client generated from the
document can type them.

Most statuses follow from what a route is, read from its definition: any parameter or body can be
refused (400, since validation answers 400 on every surface, never FastAPI's 422); a body can be
too large (413); a path names something that may not exist (404); a token is required unless the
operation says `security: []` (401, and 429 once a token or an address has asked too often); a
permission other than "view" can be refused (403). Every operation can answer 503 while the
database, the blob store or the disk is out of reach. What only some routes answer (409, 410, 415,
422, 502) each route declares in its decorator with `answers(...)`; what a route reads by hand
rather than through parameters (a dialect's body, a raw query) it declares with `body(...)` or
`query(...)`, so that those statuses follow too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Response
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, WithJsonSchema

from snapshotd.services.capture_request import FALSE_WORDS, TRUE_WORDS

DESCRIPTIONS = {
    400: "The request is malformed, or a value in it is invalid",
    401: "No token, or one that is unknown, revoked or expired",
    403: "The token's role does not hold the permission this operation needs",
    404: "Nothing by that name in the caller's organization",
    409: "The request conflicts with the current state of the resource",
    410: "The link has expired or was revoked",
    413: "The request body is larger than the server accepts",
    415: "The body is not in a media type this operation reads",
    416: "The byte range asked for starts past the end of the file",
    422: "The request is well formed but names something that already exists",
    429: "Too many requests; wait for Retry-After seconds",
    502: "The page could not be captured; the message says why",
    503: "A part the server depends on is out of reach, or the capture is not done; try again "
    "after Retry-After seconds",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
}

PROBLEM = "application/problem+json"
_NATIVE: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string"},
    },
}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_SURFACE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {**_NATIVE, "description": "RFC 9457 problem details"},
    "KasistoError": {
        "type": "object",
        "required": ["status", "message"],
        "properties": {"status": {"const": "error"}, "message": {"type": "string"}},
    },
    "ClickwrapError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                },
            }
        },
    },
    "LibratoError": {
        "oneOf": [
            {
                "type": "object",
                "required": ["errors"],
                "properties": {
                    "errors": {
                        "type": "object",
                        "properties": {
                            "params": {"type": "object", "additionalProperties": _STRINGS},
                            "request": _STRINGS,
                            "system": _STRINGS,
                        },
                    }
                },
            },
            {
                "type": "object",
                "description": "429",
                "required": ["request_time", "error"],
                "properties": {"request_time": {"type": "integer"}, "error": {"type": "string"}},
            },
        ]
    },
    "ThousandEyesV6Error": {
        "type": "object",
        "required": ["timestamp", "httpStatus", "errors", "path"],
        "properties": {
            "timestamp": {"type": "integer"},
            "httpStatus": {"type": "string"},
            "errors": _STRINGS,
            "path": {"type": "string"},
        },
    },
    "ThousandEyesV7Error": {
        "oneOf": [
            {
                **_NATIVE,
                "properties": {
                    **_NATIVE["properties"],
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "field": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            },
            {
                "type": "object",
                "description": "401",
                "required": ["error", "error_description"],
                "properties": {
                    "error": {"type": "string"},
                    "error_description": {"type": "string"},
                },
            },
        ]
    },
}
# The first prefix a path starts with names its surface (no prefix here starts another); any
# other path (native, admin, /.well-known) answers problem+json.
_SURFACES = (
    ("/create_snap", "KasistoError", ("application/json",)),
    ("/v1.1/", "ClickwrapError", ("application/json",)),
    ("/v1/", "LibratoError", ("application/json",)),
    ("/v6/", "ThousandEyesV6Error", ("application/json", "text/xml")),
    ("/v7/", "ThousandEyesV7Error", (PROBLEM,)),
)


# A time in a query: pydantic reads an ISO 8601 date-time, a bare date or Unix seconds, and the
# document says so rather than promising RFC 3339 alone.
Instant = Annotated[
    datetime | None,
    WithJsonSchema(
        {"type": "string", "description": "ISO 8601 date-time, a date, or Unix seconds"}
    ),
]

# A flag in a query or a form: the words `services.capture_request.flag` reads.
FLAG: dict[str, Any] = {"type": "string", "enum": [*TRUE_WORDS, *FALSE_WORDS]}
FLAG_DESCRIPTION = "true or false; also 1 or 0, yes or no, on or off, in any case; empty is false"

# The capture cache's controls on a route that reads them from the query (docs/api.md).
CACHE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "cache_ttl",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2_592_000,
            "description": "Reuse an identical capture up to this many seconds old (0: never); "
            "default: the organization's or the instance's setting",
        },
    },
    {
        "name": "force",
        "in": "query",
        "schema": {**FLAG, "description": f"Capture again: {FLAG_DESCRIPTION}"},
    },
]

# `openapi_extra=` of an operation that needs no token: OpenAPI's empty security requirement.
PUBLIC: dict[str, Any] = {"security": []}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """For a route decorator's `responses=`: the statuses only that route answers."""
    return {status: {"description": DESCRIPTIONS[status]} for status in statuses}


def body(schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """For a route decorator's `openapi_extra=`: the body a route reads itself, a schema per
    media type. A dialect's fields are its product's (docs/<dialect>.md); this promises the form."""
    return {"requestBody": {"content": {kind: {"schema": s} for kind, s in schemas.items()}}}


_OBJECT: dict[str, Any] = {"type": "object"}
_BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
_FORM = "application/x-www-form-urlencoded"
JSON_BODY = body({"application/json": _OBJECT})
JSON_OR_FORM = body({"application/json": _OBJECT, _FORM: _OBJECT})
KASISTO_BODY = body({"application/json": _OBJECT, _FORM: _OBJECT, "multipart/form-data": _OBJECT})
UPLOAD_BODY = body(
    {
        "multipart/form-data": {"type": "object", "properties": {"file": _BINARY}},
        "image/png": _BINARY,
        "image/jpeg": _BINARY,
    }
)


def query(
    model: type[BaseModel],
    *,
    exclude: tuple[str, ...] = (),
    flags: tuple[str, ...] = (),
    text: Mapping[str, str] | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """For `openapi_extra=`: `model`'s fields as the query parameters of a route that reads them
    from the raw query. `flags` are written as words (`services.capture_request.flag`); `text`
    names fields written as one string in the query, with how; `extra` are more parameters."""
    text = text or {}
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        if name in exclude:
            continue
        if name in flags:
            field = {**FLAG, "description": f"{field.get('description', name)}: {FLAG_DESCRIPTION}"}
        elif name in text:
            field = {"type": "string", "description": text[name]}
        parameters.append(
            {"name": name, "in": "query", "required": name in required, "schema": _value(field)}
        )
    return {"parameters": parameters + list(extra or ())}


def _value(field: dict[str, Any]) -> dict[str, Any]:
    """A field's schema without pydantic's title and null: a query value is absent, never null."""
    choices = [each for each in field.get("anyOf", ()) if each.get("type") != "null"]
    rest = {k: v for k, v in field.items() if k not in ("anyOf", "title", "default")}
    if len(choices) == 1:
        return {**rest, **choices[0]}
    return {**rest, **({"anyOf": choices} if choices else {})}


IMAGES = ("image/png", "image/jpeg", "image/webp")


def files(*media_types: str) -> dict[int | str, dict[str, Any]]:
    """For `responses=` of a route that answers a file's bytes (with `response_class=Response`,
    so that JSON is not promised as well)."""
    content = {
        media_type: {"schema": _OBJECT if media_type.endswith("json") else _BINARY}
        for media_type in media_types
    }
    return {200: {"description": "The file", "content": content}}


def signed_link(*media_types: str) -> dict[str, Any]:
    """A route decorator's keywords for a link the server signed: it needs no token, answers
    the file, and runs out."""
    return {
        "response_class": Response,
        "responses": {**answers(410), **files(*media_types)},
        "openapi_extra": PUBLIC,
    }


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    # Included routers nest their routes; a route context sees each with its full path.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        path = route.path_format or ""
        declared = {
            int(code) for code in route.responses if str(code).isdigit() and int(code) >= 400
        }
        for method in route.methods or ():
            operation = schema["paths"][path][method.lower()]
            statuses = declared | set(_derived(route, operation))
            _document(operation, path, sorted(statuses), components)
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in repr(schema["paths"]):
            components.pop(unused, None)
    return schema


def _derived(route: RouteContext, operation: dict[str, Any]) -> Iterator[int]:
    dependant = route.dependant
    has_body = "requestBody" in operation
    if operation.get("parameters") or has_body:
        yield 400
    if has_body:
        yield 413
    if dependant.path_params:
        yield 404
    if operation.get("security") != []:
        yield from (401, 429)
    if any(permission != "view" for permission in _permissions(dependant)):
        yield 403
    yield 503


def _document(
    operation: dict[str, Any], path: str, statuses: list[int], components: dict[str, Any]
) -> None:
    name, media_types = next(
        ((name, types) for prefix, name, types in _SURFACES if path.startswith(prefix)),
        ("Problem", (PROBLEM,)),
    )
    if path.endswith(".xml"):
        media_types = ("text/xml",)
    elif path.endswith(".json"):
        media_types = ("application/json",)
    components.setdefault(name, _SURFACE_SCHEMAS[name])
    responses = operation["responses"]
    if 422 not in statuses:
        responses.pop("422", None)  # FastAPI's default; validation answers 400 here
    ref = {"$ref": f"#/components/schemas/{name}"}
    for status in statuses:
        response = responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
        response["content"] = {media_type: {"schema": ref} for media_type in media_types}
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for child in dependant.dependencies:
        yield from _calls(child)


def _permissions(dependant: Dependant) -> Iterator[str]:
    """The permissions the route's dependencies check: every check is made by `deps.require` or
    a dialect's `wire.principal_factory`, and remembers the permission it was made for, so the
    document cannot drift from the checks."""
    for call in _calls(dependant):
        closure = inspect.getclosurevars(call).nonlocals if inspect.isfunction(call) else {}
        if isinstance(closure.get("permission"), str):
            yield closure["permission"]
