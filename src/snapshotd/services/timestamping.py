"""Trusted timestamps of signed manifests, asked for after the capture so a TSA never delays one.

Sealing a snapshot (`Snapshots.seal`) queues one `timestamp` job per TSA in SNAPSHOTD_TSA_URLS
and sets `metadata.timestamp` to `pending`; with no TSA it is `off`. A job sends the SHA-256 of
the manifest to its TSA and stores the reply as an artifact (role `timestamp` for the first TSA,
`timestamp-2`, `timestamp-3`… for the others), listed in `metadata.timestamps` with the TSA's
URL, name, time, serial and certificate digest; `metadata.timestamp` becomes `stamped`. While a
TSA is down the job fails and the queue retries it with backoff; when its attempts run out and
no token arrived, `metadata.timestamp` is `failed`.

A token is over one manifest: signing the manifest again (a location's change detection does)
drops the tokens and queues new jobs, and a job for a manifest that has since been replaced ends
without storing anything.

The bundle carries each token and `timestamps.json`, the companion that lists them;
`verify_tokens` is what `snapshotd verify` runs over them.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from snapshotd.config import Settings
from snapshotd.engines import timestamping
from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Snapshot
from snapshotd.store.queue import Claim, JobQueue
from snapshotd.timestamps import iso

TIMESTAMP_JOB = "timestamp"
TIMESTAMP_ROLE = "timestamp"
COMPANION = "timestamps.json"
EXTENSION = "tsr"
# Written after the manifest is signed, so they are never part of what it signs.
UNSIGNED_METADATA = ("timestamp", "timestamps")


def role_for(index: int) -> str:
    return TIMESTAMP_ROLE if index == 0 else f"{TIMESTAMP_ROLE}-{index + 1}"


class Timestamping:
    def __init__(self, settings: Settings, db: Database, queue: JobQueue, blobs: BlobStore) -> None:
        self.settings, self.db, self.queue, self.blobs = settings, db, queue, blobs
        self._roots: list[x509.Certificate] | None = None

    @property
    def roots(self) -> list[x509.Certificate] | None:
        if self.settings.tsa_ca_file and self._roots is None:
            self._roots = timestamping.load_roots(Path(self.settings.tsa_ca_file))
        return self._roots

    def sealed(self, session: Session, snapshot: Snapshot, manifest_sha256: str) -> None:
        """Called in the transaction that stored a new manifest: drops the tokens over the old
        one and asks every TSA for one over the new one."""
        session.execute(
            delete(Artifact).where(
                Artifact.snapshot_id == snapshot.id, Artifact.role.like(f"{TIMESTAMP_ROLE}%")
            )
        )
        meta = {k: v for k, v in (snapshot.meta or {}).items() if k not in UNSIGNED_METADATA}
        meta["timestamp"] = "pending" if self.settings.tsa_urls else "off"
        snapshot.meta = meta
        for index, url in enumerate(self.settings.tsa_urls):
            self.queue.enqueue(
                session,
                TIMESTAMP_JOB,
                {
                    "snapshot_id": snapshot.id,
                    "manifest": manifest_sha256,
                    "url": url,
                    "role": role_for(index),
                },
                org_id=snapshot.org_id,
                max_attempts=self.settings.tsa_max_attempts,
            )

    def manifest_of(self, claim: Claim) -> bytes | None:
        """The manifest the claim is to stamp; None when the snapshot is gone or was sealed
        again since (the newer seal queued its own job)."""
        with self.db.session() as session:
            digest = _manifest_digest(session, claim.payload["snapshot_id"])
        if digest is None or digest != claim.payload["manifest"]:
            return None
        with self.blobs.open(digest) as stream:
            return stream.read()

    def store(self, claim: Claim, reply: bytes, token: timestamping.Token) -> None:
        """Keeps a checked token as an artifact, listed in the snapshot's metadata, and completes
        the job; a token over a manifest that was replaced meanwhile is dropped."""
        digest = self.blobs.put(reply)
        snapshot_id, role = claim.payload["snapshot_id"], claim.payload["role"]
        with self.db.session() as session:
            self.queue.hold(session, claim)
            snapshot = session.get(Snapshot, snapshot_id, with_for_update=True)
            if (
                snapshot is None
                or _manifest_digest(session, snapshot_id) != claim.payload["manifest"]
            ):
                self.queue.complete(session, claim)
                return
            session.execute(
                delete(Artifact).where(Artifact.snapshot_id == snapshot_id, Artifact.role == role)
            )
            session.add(
                Artifact(
                    snapshot_id=snapshot_id,
                    role=role,
                    sha256=digest,
                    size=len(reply),
                    media_type=timestamping.MEDIA_TYPE,
                )
            )
            entry = {
                "role": role,
                "file": f"{role}.{EXTENSION}",
                "tsa_url": claim.payload["url"],
                "tsa": token.tsa,
                "time": iso(token.time),
                "serial": str(token.serial),
                "certificate_sha256": token.certificate_sha256,
                "sha256": digest,
            }
            meta = dict(snapshot.meta or {})
            others = [each for each in meta.get("timestamps", []) if each.get("role") != role]
            meta["timestamps"] = sorted([*others, entry], key=lambda each: each["role"])
            meta["timestamp"] = "stamped"
            snapshot.meta = meta
            self.queue.complete(session, claim)

    def fail(self, claim: Claim, error: str) -> None:
        """One attempt failed; when it was the last and no TSA stamped the manifest, the
        snapshot says so."""
        with self.db.session() as session:
            state = self.queue.fail(session, claim, error, retry=True)
            if state != "failed":
                return
            snapshot = session.get(Snapshot, claim.payload["snapshot_id"], with_for_update=True)
            if snapshot is not None and (snapshot.meta or {}).get("timestamp") == "pending":
                snapshot.meta = {**(snapshot.meta or {}), "timestamp": "failed"}

    def superseded(self, claim: Claim) -> None:
        with self.db.session() as session:
            self.queue.complete(session, claim)


def companion(manifest_sha256: str, meta: dict[str, Any]) -> bytes | None:
    """`timestamps.json` for a bundle: the manifest's digest and every token's entry; None when
    there is no token."""
    entries = meta.get("timestamps") or []
    if not entries:
        return None
    document = {"manifest_sha256": manifest_sha256, "tokens": entries}
    return json.dumps(document, indent=2, sort_keys=True).encode()


@dataclass(frozen=True)
class TokenCheck:
    """One token of a bundle as it was judged: who stamped it, when and with which serial (read
    from the token when it is valid, else as its companion entry lists them), whether it is over
    the manifest's SHA-256, and why not valid when it is not."""

    file: str
    valid: bool
    over_manifest: bool
    tsa: str | None
    time: str | None
    serial: str | None
    anchored: bool = False
    problem: str | None = None


def verify_tokens(
    archive: zipfile.ZipFile, manifest: bytes, roots: list[x509.Certificate] | None
) -> tuple[bool, list[str], list[TokenCheck]]:
    """Checks every token of a bundle against the manifest's SHA-256 and its TSA's certificate
    (and chain, with `roots`), and that each is the one its companion entry describes."""
    names = set(archive.namelist())
    tokens = {name for name in names if name.endswith(f".{EXTENSION}")}
    if COMPANION not in names:
        if tokens:
            return False, [f"{', '.join(sorted(tokens))}: not listed (no {COMPANION})"], []
        return True, ["timestamps: none in this bundle"], []
    try:
        entries = json.loads(archive.read(COMPANION))["tokens"]
    except (KeyError, ValueError) as error:
        return False, [f"{COMPANION}: not readable: {error}"], []
    lines: list[str] = []
    checks: list[TokenCheck] = []
    digest = hashlib.sha256(manifest).digest()
    unlisted = sorted(tokens - {entry.get("file") for entry in entries})
    for name in unlisted:
        lines.append(f"{name}: a token {COMPANION} does not list")
    for entry in entries:
        name = entry.get("file", "")
        if name not in names:
            lines.append(f"{name}: missing from the bundle")
            checks.append(_refused(entry, False, "missing from the bundle"))
            continue
        reply = archive.read(name)
        try:
            token = timestamping.check(reply, digest, roots)
        except timestamping.BadToken as error:
            lines.append(f"{name}: INVALID — {error}")
            checks.append(_refused(entry, timestamping.imprint(reply) == digest, str(error)))
            continue
        if token.certificate_sha256 != entry.get("certificate_sha256") or str(
            token.serial
        ) != entry.get("serial"):
            problem = (
                f"signed by {token.tsa} (serial {token.serial}), not the TSA "
                f"{COMPANION} names ({entry.get('tsa')}, serial {entry.get('serial')})"
            )
            lines.append(f"{name}: INVALID — {problem}")
            checks.append(_refused(entry, True, problem))
            continue
        lines.append(f"{name}: valid, timestamped by {token.tsa} at {iso(token.time)}")
        checks.append(
            TokenCheck(
                name, True, True, token.tsa, iso(token.time), str(token.serial), token.anchored
            )
        )
        if not token.anchored:
            lines.append(
                f"note: {name} was checked against the certificates it carries; pass --tsa-ca "
                "with the TSA's CA bundle to prove who stamped it"
            )
    ok = not unlisted and all(check.valid for check in checks)
    return ok, lines, checks


def _refused(entry: dict[str, Any], over_manifest: bool, problem: str) -> TokenCheck:
    return TokenCheck(
        file=entry.get("file", ""),
        valid=False,
        over_manifest=over_manifest,
        tsa=entry.get("tsa"),
        time=entry.get("time"),
        serial=entry.get("serial"),
        problem=problem,
    )


def _manifest_digest(session: Session, snapshot_id: str) -> str | None:
    return session.scalar(
        select(Artifact.sha256).where(
            Artifact.snapshot_id == snapshot_id, Artifact.role == "manifest"
        )
    )
