"""The native API's file routes under /api/v1: one artifact's bytes and the signed bundle, handed
out through http/artifacts.py like every other surface's."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from snapshotd.http import openapi
from snapshotd.http.artifacts import (
    DIRECT_SECONDS,
    ArtifactRole,
    artifact_response,
    bundle_response,
)
from snapshotd.http.deps import PrincipalDep, ServicesDep

router = APIRouter(prefix="/api/v1", tags=["snapshots"])

ARTIFACT_TYPES = (
    *openapi.IMAGES,
    "application/pdf",
    "text/html",
    "multipart/related",
    "application/json",
    "application/timestamp-reply",
    "application/x-pem-file",
    "application/zip",
)


@router.get(
    "/snapshots/{snapshot_id}/bundle",
    summary="The signed manifest and every artifact, zipped",
    response_class=Response,
    responses={**openapi.answers(409), **openapi.files("application/zip")},
)
def get_bundle(snapshot_id: str, principal: PrincipalDep, services: ServicesDep) -> Response:
    return bundle_response(services.snapshots.bundle(principal.org_id, snapshot_id), snapshot_id)


@router.get(
    "/snapshots/{snapshot_id}/{artifact}",
    summary="Download an artifact",
    description="The whole file, or with a `Range` of one byte span, that span (206).",
    response_class=Response,
    responses={
        **openapi.answers(409, 416),
        **openapi.files(*ARTIFACT_TYPES),
        206: {"description": "The byte span the Range header asked for"},
    },
)
def get_artifact(
    snapshot_id: str,
    artifact: ArtifactRole,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    return artifact_response(
        request, services, principal.org_id, snapshot_id, artifact, direct_for=DIRECT_SECONDS
    )
