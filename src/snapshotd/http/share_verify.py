"""The verify page of a share link, /s/{id}/verify (HTML) and /s/{id}/verify.json: what the
service's check found (services/verification.py), put in words and in JSON, with the commands
that repeat the check offline."""

from __future__ import annotations

import shlex
from dataclasses import asdict
from typing import Any

from snapshotd.services.records import Share, Snapshot
from snapshotd.services.verification import NO_MANIFEST, Verification
from snapshotd.timestamps import iso

KEY_PATH = "/.well-known/snapshotd-manifest-key"

CHECKS = {
    "matches": "matches the signed manifest",
    "differs": "DIFFERS from the signed manifest",
    "missing": "missing",
    "unsigned": "not covered by a signature",
    "unchecked": "not checked",
    "manifest": "the signed manifest",
    "timestamp": "trusted timestamp token",
}

STAMP_STATES = {
    "off": "This instance asks no time-stamping authority (TSA) for tokens.",
    "pending": "A trusted timestamp was asked for and has not arrived yet; reload in a moment.",
    "failed": "Every TSA asked failed to answer in time: the snapshot has no trusted timestamp.",
    "stamped": "",
}


def verify_json(
    share: Share,
    snapshot: Snapshot,
    report: Verification,
    *,
    base: str,
    subject: str,
) -> dict[str, Any]:
    """The JSON form; `base` is the server's public address."""
    link = f"{base}/s/{share.id}"
    return {
        "share_id": share.id,
        "snapshot_id": snapshot.id,
        "kind": snapshot.kind,
        "subject": subject,
        "url": snapshot.url,
        "captured_at": iso(snapshot.completed_at or snapshot.created_at),
        "manifest": report.status,
        "reason": report.reason,
        "manifest_sha256": report.manifest_sha256,
        "signature": {
            "algorithm": "Ed25519",
            "key_id": report.signed_by,
            "instance_key_id": report.key.key_id,
            "instance_key_fingerprint": report.key.fingerprint,
            "instance_public_key": report.key.public_key,
            "key_url": base + KEY_PATH,
        },
        "artifacts": [asdict(row) for row in report.artifacts],
        "timestamp": report.timestamp,
        "timestamps": [asdict(token) for token in report.tokens],
        "checks": report.lines,
        "bundle_url": f"{link}/bundle" if share.evidence else None,
        "page_url": link,
    }


def commands(
    share: Share, snapshot: Snapshot, report: Verification, *, base: str
) -> dict[str, str | None]:
    """The shell lines a reader runs to repeat the check offline."""
    bundle = f"{snapshot.id}.zip"
    key = base + KEY_PATH
    tokens = [token.file for token in report.tokens] or (
        ["timestamp.tsr"] if report.timestamp == "stamped" else []
    )
    openssl = None
    if report.manifest_sha256 and tokens:
        openssl = (
            f"unzip -o {shlex.quote(bundle)} {shlex.quote(tokens[0])}\n"
            f"openssl ts -verify -in {shlex.quote(tokens[0])} "
            f"-digest {report.manifest_sha256} -CAfile tsa-ca.pem"
        )
    return {
        "download": (
            f"curl -fsS -o {shlex.quote(bundle)} {shlex.quote(f'{base}/s/{share.id}/bundle')}"
            if share.evidence
            else None
        ),
        "key": f"curl -fsS {shlex.quote(key)} | jq -r .pem > manifest-key.pem",
        "verify": (
            f"snapshotd verify {shlex.quote(bundle)} --key manifest-key.pem"
            + (" --tsa-ca tsa-ca.pem" if tokens else "")
        ),
        "openssl": openssl,
    }


def summary(report: Verification) -> str:
    if report.status == NO_MANIFEST:
        return "no manifest"
    return report.status
