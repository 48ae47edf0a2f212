"""Content-addressed artifact storage: a blob's name is the SHA-256 of its bytes."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Protocol


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Stores `data`, returns its SHA-256 hex digest; the same bytes twice are kept once."""
        ...

    def open(self, digest: str) -> BinaryIO: ...

    def delete(self, digest: str) -> None: ...

    def exists(self, digest: str) -> bool: ...

    def age(self, digest: str) -> float | None:
        """Seconds since the blob was last written (a `put` of existing bytes counts), or None
        when it does not exist. The sweeper leaves young blobs alone."""
        ...

    def url(self, digest: str, *, expires_in: int) -> str | None:
        """A direct URL valid for `expires_in` seconds, or None when the API serves it."""
        ...


def _check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
    return digest


class FileBlobStore:
    """Blobs under `root/ab/cd/<digest>`, written to a temp file and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        _check_digest(digest)
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            try:
                os.utime(path)
                return digest
            except FileNotFoundError:
                pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def open(self, digest: str) -> BinaryIO:
        try:
            return self._path(digest).open("rb")
        except FileNotFoundError:
            raise KeyError(digest) from None

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()

    def age(self, digest: str) -> float | None:
        try:
            return max(0.0, time.time() - self._path(digest).stat().st_mtime)
        except FileNotFoundError:
            return None

    def url(self, digest: str, *, expires_in: int) -> str | None:
        return None
