"""Signed manifests: tamper evidence for every snapshot, checkable offline.

A manifest is JSON: the snapshot's facts and metadata and, for every artifact, its role, media type,
size and SHA-256. It is signed with the instance's Ed25519 key over the canonical JSON (sorted keys,
no spaces, UTF-8) and stored as the snapshot's `manifest` artifact:

    {"manifest": {…}, "signature": {"algorithm": "Ed25519", "key_id": "…", "value": "<base64>"}}

The key is generated on first use in the data folder (or read from `SNAPSHOTD_MANIFEST_KEY_FILE`,
which machines of one deployment should share); its public half is served at
`/.well-known/snapshotd-manifest-key`. `verify_bundle` is what `snapshotd verify` runs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from snapshotd.config import Settings
from snapshotd.services import timestamping
from snapshotd.store.models import Snapshot
from snapshotd.timestamps import iso

MANIFEST_ROLE = "manifest"
MEDIA_TYPE = "application/json"
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "application/pdf": "pdf",
    "text/html": "html",
    "multipart/related": "mhtml",
    "application/json": "json",
    "application/timestamp-reply": "tsr",
    "application/x-pem-file": "pem",
    # The web archive: a WACZ is a ZIP, and replay tools know it by its `.wacz` name.
    "application/zip": "wacz",
}
_lock = threading.Lock()


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def key_path(settings: Settings) -> Path:
    return Path(settings.manifest_key_file or settings.data_dir / "keys" / "manifest-ed25519.pem")


class MissingKey(RuntimeError):
    """SNAPSHOTD_MANIFEST_KEY_FILE names a file that does not exist."""


def create_key_file(path: Path) -> bool:
    """Writes a new Ed25519 private key to `path` (PEM, mode 0600, atomically); False, and the
    file untouched, when it already exists (another process may have won the race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink()


def load_or_create_key(settings: Settings) -> Ed25519PrivateKey:
    """The instance's signing key. The data folder's own key is created when missing; a key file
    chosen with SNAPSHOTD_MANIFEST_KEY_FILE never is (MissingKey), since a mistyped path on one
    machine would otherwise sign with a key no client trusts."""
    path = key_path(settings)
    with _lock:
        if not path.exists():
            if settings.manifest_key_file:
                raise MissingKey(
                    f"SNAPSHOTD_MANIFEST_KEY_FILE={path} does not exist: create the key once with "
                    "`snapshotd keygen FILE` and copy it to every machine, or leave the setting "
                    "empty to keep a key in the data folder"
                )
            create_key_file(path)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RuntimeError(f"{path} does not hold an Ed25519 private key")
    return key


class Signer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key: Ed25519PrivateKey | None = None

    @property
    def key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = load_or_create_key(self.settings)
        return self._key

    def public(self) -> dict[str, str]:
        public = self.key.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "algorithm": "Ed25519",
            "key_id": key_id(public),
            "public_key": base64.b64encode(raw).decode(),
            "pem": public_pem(public),
        }

    def manifest(self, snapshot: Snapshot, artifacts: list[dict[str, Any]]) -> bytes:
        """The signed manifest of `snapshot` with `artifacts` (role, media_type, size, sha256,
        width, height), as the bytes stored in the `manifest` artifact."""
        body = {
            "version": 1,
            "snapshot": {
                "id": snapshot.id,
                "organization": snapshot.org_id,
                "kind": snapshot.kind,
                "url": snapshot.url,
                "source": snapshot.source,
                "location": snapshot.location_id,
                "created_at": iso(snapshot.created_at),
                "completed_at": iso(snapshot.completed_at),
            },
            "metadata": {
                key: value
                for key, value in (snapshot.meta or {}).items()
                if key not in timestamping.UNSIGNED_METADATA
            },
            "artifacts": sorted(artifacts, key=lambda a: a["role"]),
        }
        signature = self.key.sign(canonical(body))
        document = {
            "manifest": body,
            "signature": {
                "algorithm": "Ed25519",
                "key_id": key_id(self.key.public_key()),
                "value": base64.b64encode(signature).decode(),
            },
        }
        return json.dumps(document, indent=2, sort_keys=True).encode()


def extension(media_type: str, default: str = "bin") -> str:
    """The file extension artifacts of `media_type` are named with (in bundles, downloads),
    whatever parameters the type carries (`text/html; charset=utf-8` is `html`)."""
    return _EXTENSIONS.get(media_type.partition(";")[0].strip().lower(), default)


def bundle(manifest: bytes, files: dict[str, bytes], public: dict[str, str]) -> bytes:
    """A zip a user can keep and check offline: the manifest, every artifact named by its role,
    and the public key."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", manifest)
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("public-key.pem", public["pem"])
    return out.getvalue()


@dataclass
class FileCheck:
    """One artifact the manifest lists, and the SHA-256 of the bundle's file of that name (None
    when the bundle lacks it)."""

    role: str
    name: str
    media_type: str
    size: int | None
    sha256: str
    actual: str | None

    @property
    def matches(self) -> bool:
        return self.actual == self.sha256


@dataclass
class Verdict:
    """What `verify_bundle` found: `ok` and the lines `snapshotd verify` prints, and the same
    findings one by one for pages that show them."""

    ok: bool
    lines: list[str]
    signature_valid: bool = False
    key_id: str | None = None
    files: list[FileCheck] = field(default_factory=list)
    tokens: list[timestamping.TokenCheck] = field(default_factory=list)


def verify_bundle(
    data: bytes,
    public_key: Ed25519PublicKey | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
) -> Verdict:
    """Checks a bundle's signature (with `public_key`, else the bundled key, which only proves
    integrity), every artifact's SHA-256 and every trusted timestamp (chained to `tsa_roots`
    when given)."""
    lines: list[str] = []
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        document = json.loads(archive.read("manifest.json"))
        body, signature = document["manifest"], document["signature"]
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        return Verdict(False, [f"not a snapshotd bundle: {error}"])
    pinned = public_key is not None
    if public_key is None:
        public_key = load_public(archive.read("public-key.pem"))
    signed = True
    if signature.get("key_id") != key_id(public_key):
        signed = False
        lines.append(f"signature key {signature.get('key_id')} is not {key_id(public_key)}")
    try:
        public_key.verify(base64.b64decode(signature["value"]), canonical(body))
        lines.append(f"signature: valid (Ed25519, key {signature['key_id']})")
    except (InvalidSignature, ValueError):
        signed = False
        lines.append("signature: INVALID — the manifest was changed after it was signed")
    if not pinned:
        lines.append(
            "note: checked with the key inside the bundle; pass --key with the instance's "
            "published key to prove who signed it"
        )
    names = set(archive.namelist())
    files = []
    for artifact in body.get("artifacts", []):
        name = f"{artifact['role']}.{extension(artifact['media_type'])}"
        if name not in names:
            # Bundles made before media-type parameters were read past named such a file `.bin`.
            name = f"{artifact['role']}.{_EXTENSIONS.get(artifact['media_type'], 'bin')}"
        actual = hashlib.sha256(archive.read(name)).hexdigest() if name in names else None
        check = FileCheck(
            artifact["role"],
            name,
            artifact["media_type"],
            artifact.get("size"),
            artifact["sha256"],
            actual,
        )
        files.append(check)
        if actual is None:
            lines.append(f"{name}: missing from the bundle")
        elif not check.matches:
            lines.append(
                f"{name}: SHA-256 {actual} differs from the manifest's {artifact['sha256']}"
            )
        else:
            lines.append(f"{name}: SHA-256 matches")
    stamped, stamp_lines, tokens = timestamping.verify_tokens(
        archive, archive.read("manifest.json"), tsa_roots
    )
    return Verdict(
        signed and stamped and all(each.matches for each in files),
        lines + stamp_lines,
        signature_valid=signed,
        key_id=signature.get("key_id"),
        files=files,
        tokens=tokens,
    )
