"""Keeps secrets that travel in URLs out of the access log: `?token=` (Kasisto), `sig=` on signed
download links, and share-link ids in `/s/{id}` paths."""

from __future__ import annotations

import logging
import re

_QUERY_SECRET = re.compile(r"(?i)([?&](?:token|sig|access_token)=)[^&\s]*")
_SHARE_PATH = re.compile(r"(/s/[A-Za-z0-9_-]{6})[A-Za-z0-9_-]*")


def redact(text: str) -> str:
    return _SHARE_PATH.sub(r"\1…", _QUERY_SECRET.sub(r"\1[redacted]", text))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install(logger_name: str = "uvicorn.access") -> None:
    """Idempotent: adds the filter once, after the server has configured its loggers."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
