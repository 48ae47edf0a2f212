"""What a share link's verify page says about its snapshot: every stored artifact with its digest,
whether the signed manifest holds, and each trusted timestamp.

The check is the offline one: the snapshot's bundle is built as /bundle serves it and judged by
`manifests.verify_bundle` with the instance's own public key (and SNAPSHOTD_TSA_CA_FILE for the
tokens, when set), so the page says "valid" exactly when `snapshotd verify --key` would. Snapshots
without a manifest (test windows, or a capture still under way) get their stored digests and a
plain "no manifest".

Building and hashing a bundle reads every artifact, a web archive included, so a verdict is kept
for `RECHECK_SECONDS` per snapshot and set of stored digests: a link opened by many people at once
costs one check, and a change to what is stored (a timestamp token arriving) is a new check.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from snapshotd.errors import Conflict
from snapshotd.services import manifests, timestamping
from snapshotd.services.manifests import MANIFEST_ROLE, Verdict
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.thumbnails import evidence_artifacts
from snapshotd.store.models import Artifact, Snapshot

VALID, INVALID, NO_MANIFEST = "valid", "invalid", "none"
RECHECK_SECONDS = 60.0
KEPT_VERDICTS = 256


@dataclass(frozen=True)
class ArtifactRow:
    """One artifact as stored, and what the check says of it: `matches` or `differs` (from the
    manifest's digest), `missing` (listed but not stored), `unsigned` (stored, not listed; every
    artifact of a snapshot without a manifest), `unchecked` (the check could not run), `manifest`
    or `timestamp`."""

    role: str
    media_type: str
    size: int | None
    sha256: str
    check: str


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    fingerprint: str  # SHA-256 of the raw Ed25519 public key, hex
    public_key: str  # the raw public key, base64


@dataclass
class Verification:
    status: str  # VALID, INVALID or NO_MANIFEST
    reason: str
    key: SigningKey
    signed_by: str | None = None  # the key id the manifest's signature names
    manifest_sha256: str | None = None
    timestamp: str = "off"  # metadata.timestamp: off, pending, stamped or failed
    artifacts: list[ArtifactRow] = field(default_factory=list)
    tokens: list[timestamping.TokenCheck] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


class Verifier:
    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        self._verdicts: OrderedDict[tuple[object, ...], tuple[float, Verification]] = OrderedDict()
        self._lock = threading.Lock()

    def key(self) -> SigningKey:
        public = self.snapshots.signer.public()
        raw = base64.b64decode(public["public_key"])
        return SigningKey(public["key_id"], hashlib.sha256(raw).hexdigest(), public["public_key"])

    def check(self, snapshot: Snapshot) -> Verification:
        """Judges the snapshot (loaded with its artifacts) as `snapshotd verify` would judge
        its bundle; a verdict on the same stored digests younger than RECHECK_SECONDS is reused."""
        meta = snapshot.meta or {}
        key = (
            snapshot.id,
            str(meta.get("timestamp") or "off"),
            tuple((a.role, a.sha256) for a in evidence_artifacts(snapshot.artifacts)),
        )
        now = time.monotonic()
        with self._lock:
            kept = self._verdicts.get(key)
            if kept is not None and now - kept[0] < RECHECK_SECONDS:
                return kept[1]
        report = self._check(snapshot)
        with self._lock:
            self._verdicts[key] = (now, report)
            self._verdicts.move_to_end(key)
            while len(self._verdicts) > KEPT_VERDICTS:
                self._verdicts.popitem(last=False)
        return report

    def _check(self, snapshot: Snapshot) -> Verification:
        meta = snapshot.meta or {}
        stored = evidence_artifacts(snapshot.artifacts)
        report = Verification(
            NO_MANIFEST, "", self.key(), timestamp=str(meta.get("timestamp") or "off")
        )
        manifest = next((a for a in stored if a.role == MANIFEST_ROLE), None)
        if manifest is None:
            report.reason = _unsigned_reason(snapshot)
            report.artifacts = [_row(a, "unsigned") for a in stored]
            return report
        report.manifest_sha256 = manifest.sha256
        try:
            bundle = self.snapshots.bundle(snapshot.org_id, snapshot.id)
        except KeyError as error:
            role = next((a.role for a in stored if a.sha256 == error.args[0]), "an artifact")
            report.status = INVALID
            report.reason = f"the stored bytes of {role} are missing"
            report.artifacts = [
                _row(a, "missing" if a.role == role else "unchecked") for a in stored
            ]
            return report
        except Conflict as error:
            report.reason = error.detail
            report.artifacts = [_row(a, "unsigned") for a in stored]
            return report
        public = manifests.load_public(self.snapshots.signer.public()["pem"].encode())
        verdict = manifests.verify_bundle(bundle, public, self.snapshots.timestamping.roots)
        report.status = VALID if verdict.ok else INVALID
        report.reason = _reason(verdict)
        report.signed_by = verdict.key_id
        report.tokens = verdict.tokens
        report.lines = verdict.lines
        report.artifacts = _rows(stored, verdict)
        return report


def _row(artifact: Artifact, check: str) -> ArtifactRow:
    return ArtifactRow(artifact.role, artifact.media_type, artifact.size, artifact.sha256, check)


def _rows(stored: list[Artifact], verdict: Verdict) -> list[ArtifactRow]:
    listed = {each.role: each for each in verdict.files}
    rows = []
    for artifact in stored:
        if artifact.role == MANIFEST_ROLE:
            check = "manifest"
        elif artifact.role.startswith(timestamping.TIMESTAMP_ROLE):
            check = "timestamp"
        elif artifact.role in listed:
            check = "matches" if listed[artifact.role].matches else "differs"
        else:
            check = "unsigned"
        rows.append(_row(artifact, check))
    present = {artifact.role for artifact in stored}
    for each in verdict.files:
        if each.role not in present:
            rows.append(ArtifactRow(each.role, each.media_type, each.size, each.sha256, "missing"))
    return rows


def _reason(verdict: Verdict) -> str:
    if not verdict.signature_valid:
        return "the manifest's signature does not hold with this instance's key"
    differs = [each.role for each in verdict.files if not each.matches]
    if differs:
        return f"stored files differ from the signed manifest: {', '.join(differs)}"
    refused = [each.file for each in verdict.tokens if not each.valid]
    if refused:
        return f"timestamp tokens do not verify: {', '.join(refused)}"
    if not verdict.ok:
        return "; ".join(verdict.lines)
    return "the signature holds and every file matches the signed manifest"


def _unsigned_reason(snapshot: Snapshot) -> str:
    if snapshot.status in ("queued", "working"):
        return f"the snapshot is still {snapshot.status}; its manifest is signed when it completes"
    what = "test snapshots have" if snapshot.kind == "test_window" else "this snapshot has"
    return (
        f"{what} no signed manifest: the digests below are the stored files', with no "
        "signature to check them against"
    )
