"""RFC 3161 trusted timestamps: asking a time-stamping authority (TSA) to sign a digest together
with its clock, and checking a reply it gave.

A reply (`application/timestamp-reply`, kept whole so `openssl ts -verify -in` reads it) holds a
token: the TSA's signature over the digest, the time and a serial number, with the TSA's
certificate. `check` is the one place a reply is judged, both when it arrives and when a bundle
is verified offline, so a token the service stored is one `snapshotd verify` accepts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

MEDIA_TYPE = "application/timestamp-reply"
SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


class BadToken(ValueError):
    """A TSA's reply that is not a valid token over the expected digest; the message says why."""


@dataclass(frozen=True)
class Token:
    """What a valid token says: who stamped, when, and which of its certificates signed."""

    tsa: str
    time: datetime
    serial: int
    certificate_sha256: str
    anchored: bool


def load_roots(path: Path) -> list[x509.Certificate]:
    """The certificates of a PEM CA bundle, the trust anchors a token's chain must reach."""
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as error:
        raise ValueError(f"{path} is not a PEM certificate bundle: {error}") from None


async def request(
    client: httpx.AsyncClient, url: str, data: bytes, roots: list[x509.Certificate] | None
) -> tuple[bytes, Token]:
    """Asks the TSA at `url` to stamp the SHA-256 of `data`; the reply and what it says.

    Raises httpx.HTTPError when the TSA cannot be reached or answers with an error status, and
    BadToken when its reply does not hold up, so the caller can try again later either way."""
    query = TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256).build()
    response = await client.post(
        url,
        content=query.as_bytes(),
        headers={"content-type": "application/timestamp-query"},
    )
    response.raise_for_status()
    token = check(response.content, hashlib.sha256(data).digest(), roots, nonce=query.nonce)
    return response.content, token


def check(
    reply: bytes,
    digest: bytes,
    roots: list[x509.Certificate] | None,
    *,
    nonce: int | None = None,
) -> Token:
    """Checks that `reply` is a granted token over the SHA-256 `digest`, signed by a certificate
    with the timeStamping extended key usage.

    With `roots` the signer's chain must reach one of them. Without, the self-signed
    certificates the token carries are the anchors: that proves the token is intact and names
    its TSA, but not that the TSA is one the reader trusts (`Token.anchored` is False)."""
    try:
        parsed = decode_timestamp_response(reply)
    except ValueError as error:
        raise BadToken(f"not an RFC 3161 reply: {error}") from None
    imprint = parsed.tst_info.message_imprint
    if imprint.hash_algorithm != SHA256_OID:
        raise BadToken(f"the token is over a {imprint.hash_algorithm.dotted_string} digest")
    if imprint.message != digest:
        raise BadToken("the token is over another digest than the manifest's SHA-256")
    carried = [x509.load_der_x509_certificate(each) for each in parsed.signed_data.certificates]
    signer = _signer(parsed, carried)
    anchors = roots or [each for each in carried if each.issuer == each.subject]
    if not anchors:
        raise BadToken("the token carries no root certificate; check it with the TSA's CA bundle")
    # Only the anchors are trusted: the verifier would trust "intermediates" as much as roots,
    # and the certificates a token carries are already offered to the chain as untrusted ones.
    builder = VerifierBuilder(roots=list(anchors))
    if nonce is not None:
        builder = builder.nonce(nonce)
    try:
        builder.build().verify(parsed, digest)
    except VerificationError as error:
        raise BadToken(f"the TSA's signature does not hold: {_reason(error)}") from None
    der = signer.public_bytes(serialization.Encoding.DER)
    return Token(
        tsa=tsa_name(signer),
        time=parsed.tst_info.gen_time,
        serial=parsed.tst_info.serial_number,
        certificate_sha256=hashlib.sha256(der).hexdigest(),
        anchored=bool(roots),
    )


def imprint(reply: bytes) -> bytes | None:
    """The digest a reply's token is over, read without judging the token; None when the reply
    cannot be read or is over another hash than SHA-256."""
    try:
        message = decode_timestamp_response(reply).tst_info.message_imprint
    except ValueError:
        return None
    return message.message if message.hash_algorithm == SHA256_OID else None


def tsa_name(certificate: x509.Certificate) -> str:
    """The TSA's name as people read it: its certificate's common name, else the whole subject."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def _reason(error: Exception) -> str:
    """OpenSSL's own words from a verification error, without the dump of its error stack."""
    text = str(error)
    detail = re.search(r'data: "([^"]+)"', text) or re.search(r'reason: "([^"]+)"', text)
    head = text.split(": ErrorStack", 1)[0]
    return f"{head} ({detail.group(1)})" if detail else head


def _signer(parsed: TimeStampResponse, carried: list[x509.Certificate]) -> x509.Certificate:
    infos = list(parsed.signed_data.signer_infos)
    if len(infos) != 1:
        raise BadToken(f"the token has {len(infos)} signers, not one")
    info = infos[0]
    for certificate in carried:
        if certificate.issuer == info.issuer and certificate.serial_number == info.serial_number:
            return certificate
    raise BadToken("the token does not carry its TSA's certificate")
