"""The records services hand to their callers: the rows of store/models/, named here so that
front ends can type what they render without importing the store. Callers read their attributes;
only services change them, inside their own sessions."""

from snapshotd.store.models import (
    AccountGroup,
    Agent,
    AnnotationEvent,
    AnnotationStream,
    ApiToken,
    Artifact,
    Chart,
    Job,
    Location,
    Metric,
    Organization,
    ProbeRound,
    RenderKey,
    Share,
    Snapshot,
    Space,
    SyntheticTest,
    User,
    utcnow,
)

__all__ = [
    "AccountGroup",
    "Agent",
    "AnnotationEvent",
    "AnnotationStream",
    "ApiToken",
    "Artifact",
    "Chart",
    "Job",
    "Location",
    "Metric",
    "Organization",
    "ProbeRound",
    "RenderKey",
    "Share",
    "Snapshot",
    "Space",
    "SyntheticTest",
    "User",
    "utcnow",
]
