"""Where a capture's bytes came from: the certificate chain the page's https origin presented, the
DNS answers the egress guard used for each host, and the options the capture ran with.

The chain comes from Chromium itself (`Network.getCertificate` on the capture's CDP session): the
guard only tunnels https and never sees a certificate. It is kept as a PEM artifact, and described
in the metadata (subject, issuer, validity and SHA-256 of each certificate, leaf first) so the
signed manifest names it even for a reader who cannot parse PEM.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import textwrap
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography import x509
from playwright.async_api import CDPSession
from playwright.async_api import Error as PlaywrightError

from snapshotd.engines.har import HarRecorder
from snapshotd.engines.lanes import Lane

if TYPE_CHECKING:
    from snapshotd.engines.capture import CaptureOptions

__all__ = [
    "MEDIA_TYPE",
    "CertificateChain",
    "addresses",
    "certificate_chain",
    "gather",
    "options_record",
]

MEDIA_TYPE = "application/x-pem-file"


@dataclasses.dataclass(frozen=True)
class CertificateChain:
    origin: str
    der: list[bytes]  # leaf first

    @property
    def pem(self) -> bytes:
        blocks = [
            "-----BEGIN CERTIFICATE-----\n"
            + "\n".join(textwrap.wrap(base64.b64encode(each).decode(), 64))
            + "\n-----END CERTIFICATE-----\n"
            for each in self.der
        ]
        return "".join(blocks).encode()

    def describe(self) -> dict[str, Any]:
        certificates = []
        for each in self.der:
            try:
                parsed = x509.load_der_x509_certificate(each)
            except ValueError:
                certificates.append({"sha256": hashlib.sha256(each).hexdigest()})
                continue
            certificates.append(
                {
                    "subject": parsed.subject.rfc4514_string(),
                    "issuer": parsed.issuer.rfc4514_string(),
                    "not_before": parsed.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
                    "not_after": parsed.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
                    "sha256": hashlib.sha256(each).hexdigest(),
                }
            )
        return {"origin": self.origin, "certificates": certificates}


async def certificate_chain(cdp: CDPSession, url: str) -> CertificateChain | None:
    """The chain `url`'s origin presented to this page, or None for http (or when Chromium kept
    none, as for a page it served from an error)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return None
    origin = f"https://{parts.netloc.rpartition('@')[2]}"
    try:
        answer = await cdp.send("Network.getCertificate", {"origin": origin})
    except PlaywrightError:
        return None
    der = [base64.b64decode(each) for each in answer.get("tableNames", [])]
    return CertificateChain(origin, der) if der else None


def options_record(options: CaptureOptions) -> dict[str, Any]:
    """The capture options as JSON for the metadata, with the values of request
    headers and cookies left out: they are often credentials, and the manifest is shared."""
    record = dataclasses.asdict(options)
    record["headers"] = sorted(options.headers)
    record["cookies"] = [
        {
            "name": cookie.name,
            "domain": cookie.domain,
            "path": cookie.path,
            "secure": cookie.secure,
            "http_only": cookie.http_only,
        }
        for cookie in options.cookies
    ]
    return record


def addresses(lane: Lane | None) -> dict[str, list[str]]:
    """The addresses the egress guard connected to for each host: behind the guard, Chromium
    only knows the proxy's address."""
    dns = lane.dns if lane is not None else {}
    return {host: record["used"] for host, record in dns.items()}


async def gather(
    cdp: CDPSession,
    recorder: HarRecorder,
    lane: Lane | None,
    options: CaptureOptions,
    metadata: dict[str, Any],
    browser_version: str,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The `har` and `certificate_chain` artifacts by role, and the metadata's `provenance`: the
    lane's DNS answers, the HAR's size, the chain's description and the options."""
    dns = lane.dns if lane is not None else {}
    files = {
        "har": await recorder.har(
            title=metadata["title"],
            browser_version=browser_version,
            addresses=addresses(lane),
        )
    }
    record: dict[str, Any] = {
        "dns": dns,
        "har": {"entries": recorder.entries, "omitted": recorder.omitted},
        "options": options_record(options),
    }
    chain = await certificate_chain(cdp, metadata["final_url"])
    if chain is not None:
        files["certificate_chain"] = chain.pem
        record["certificate_chain"] = chain.describe()
    return files, record
