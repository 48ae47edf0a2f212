"""Egress policy: which addresses captures and probes may reach.

`EgressPolicy` decides, statically for a URL (before anything is queued) and for each address a
name resolves to; `snapshotd.engines.guard.EgressGuard` enforces it at connect time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from snapshotd.errors import EgressDenied, InvalidURL
from snapshotd.rules import HOSTNAME, allowlist_entry, legacy_ipv4, normalize_host

__all__ = ["EgressPolicy", "IPAddress"]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")


def _kind(ip: IPAddress) -> str | None:
    """What makes `ip` unreachable for captures, as a noun phrase; None if it is fine."""
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.version == 4 and ip in _CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if not ip.is_global:
        return "not a globally routable address"
    return None


def _rfc6052(ip: ipaddress.IPv6Address, prefix_len: int) -> ipaddress.IPv4Address:
    # RFC 6052 places the IPv4 bytes right after the prefix, skipping the reserved byte 8.
    positions = [i for i in range(prefix_len // 8, 16) if i != 8][:4]
    return ipaddress.IPv4Address(bytes(ip.packed[i] for i in positions))


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 transition form would really deliver packets to."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _NAT64:
        return [_rfc6052(ip, 96)]
    if ip in _NAT64_LOCAL:
        # The local-use prefix may be deployed at any RFC 6052 length; check each reading.
        return [_rfc6052(ip, length) for length in (48, 56, 64, 96)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


class EgressPolicy:
    """Which destinations are allowed: global addresses, plus what the operator allowlisted."""

    def __init__(
        self, allow: Sequence[str] = (), *, hosts: Mapping[str, str] | None = None
    ) -> None:
        """`hosts` pins names to addresses without asking DNS, like /etc/hosts: it lets a test
        give its loopback servers real-looking names. The pinned address is checked all the same."""
        self._hosts = {name.lower(): ipaddress.ip_address(ip) for name, ip in (hosts or {}).items()}
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._names: set[str] = set()
        self._suffixes: list[str] = []
        for entry in allow:
            allowed = allowlist_entry(entry)
            if isinstance(allowed, str) and allowed.startswith("."):
                self._suffixes.append(allowed)
            elif isinstance(allowed, str):
                self._names.add(allowed)
            else:
                self._networks.append(allowed)

    def _name_allowed(self, host: str) -> bool:
        name = host.lower().removesuffix(".")
        return name in self._names or any(name.endswith(s) for s in self._suffixes)

    def address_refusal(self, host: str, ip: IPAddress) -> str | None:
        """Why connecting to `ip` (resolved from `host`) is refused, or None if it is allowed."""
        if self._name_allowed(host):
            return None
        inner = _embedded_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else []
        for candidate in (ip, *inner):
            if any(candidate.version == n.version and candidate in n for n in self._networks):
                return None
        if not inner:
            kind = _kind(ip)
            return None if kind is None else f"{ip} is {kind}"
        for v4 in inner:
            kind = _kind(v4)
            if kind is not None:
                return f"{ip} embeds {v4}, {kind}"
        return None

    def _inspect(self, url: str) -> InvalidURL | EgressDenied | None:
        # WHATWG URL parsing strips leading/trailing C0 controls and spaces.
        text = url.strip("".join(map(chr, range(0x21))))
        if _CONTROL.search(text):
            return InvalidURL("URL contains whitespace or control characters")
        scheme, colon, _ = text.partition(":")
        if not colon or not _SCHEME.fullmatch(scheme):
            return InvalidURL("URL has no scheme; use http:// or https://")
        if scheme.lower() not in ("http", "https"):
            return InvalidURL(f"scheme {scheme.lower()!r} is not allowed; use http or https")
        try:
            # Browsers read "\" as "/" in http(s) URLs, which can end the authority early.
            parts = urlsplit(text.replace("\\", "/"))
            port = parts.port
        except ValueError as exc:
            return InvalidURL(f"malformed URL: {exc}")
        if port == 0:
            return InvalidURL("URL has an invalid port")
        host = parts.hostname
        if not host:
            return InvalidURL("URL has no host")
        if parts.netloc.rpartition("@")[2].startswith("["):
            try:
                ip6 = ipaddress.IPv6Address(host)
            except ValueError:
                return InvalidURL(f"malformed IPv6 address {host!r}")
            if ip6.scope_id:
                return InvalidURL("IPv6 zone identifiers are not allowed")
            ip: IPAddress = ip6
        else:
            name = normalize_host(host)
            parsed = None if name is None else legacy_ipv4(name.removesuffix("."))
            if (
                name is None
                or parsed is False
                or (parsed is None and not HOSTNAME.fullmatch(name.removesuffix(".")))
            ):
                return InvalidURL(f"invalid host {host!r}")
            if isinstance(parsed, ipaddress.IPv4Address):
                ip = parsed
            elif name.removesuffix(".") == "localhost" or name.removesuffix(".").endswith(
                ".localhost"
            ):
                if self.address_refusal(name, _LOOPBACK_V4) is None:
                    return None
                return EgressDenied(f"{name} names a loopback address")
            else:
                return None
        reason = self.address_refusal(host, ip)
        return None if reason is None else EgressDenied(reason)

    def url_refusal(self, url: str) -> str | None:
        """Why `url` may not be captured, judged without DNS; None if it may be queued."""
        error = self._inspect(url)
        return None if error is None else error.detail

    def check_url(self, url: str) -> None:
        """Raise InvalidURL or EgressDenied if `url` may not be captured (no DNS)."""
        error = self._inspect(url)
        if error is not None:
            raise error

    async def resolve(self, host: str, port: int) -> IPAddress:
        """The first address `host` resolves to that may be reached; EgressDenied otherwise."""
        return self.choose(host, await self.answers(host, port))

    async def answers(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` resolves to, in the resolver's order, allowed or not (the guard
        keeps them as evidence of what the name meant); EgressDenied if it does not resolve."""
        name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        pinned = self._hosts.get(name.lower().removesuffix("."))
        if pinned is not None:
            return [pinned]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise EgressDenied(f"could not resolve host {name!r}") from exc
        found = [ipaddress.ip_address(str(sockaddr[0])) for *_, sockaddr in infos]
        return list(dict.fromkeys(found))

    def choose(self, host: str, addresses: Sequence[IPAddress]) -> IPAddress:
        """The first of `addresses` (what `host` resolved to) that may be reached."""
        name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        first_reason = None
        for ip in addresses:
            reason = self.address_refusal(name, ip)
            if reason is None:
                return ip
            first_reason = first_reason or reason
        if first_reason is None:
            raise EgressDenied(f"could not resolve host {name!r}")
        prefix = "" if first_reason.startswith(name) else f"{name} resolves to "
        raise EgressDenied(prefix + first_reason)
