"""One guarded road out: every HTTP call made on a tenant's behalf (status callbacks now, any later
webhook too) goes through `post`. The URL is parsed once, by the parser that connects (urllib3's);
user info, backslashes, control characters and schemes other than http(s) are refused; the host is
resolved once and every address it resolves to is checked; the connection goes to the checked
address (Host header and TLS SNI/certificate name kept), so neither a second resolution (DNS
rebinding) nor two parsers disagreeing can reach another host. Redirects are never followed."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from urllib3.util import parse_url

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL = 2000


class Refused(ValueError):
    """A URL we will not call; the message says why (it is shown to the account)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as the URL names it: the Host header and the TLS server name
    port: int
    request_uri: str
    address: str  # the checked address the connection goes to

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for a TCP connection to host:port."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# What `check` asks when it is given no resolver; tests put a stub here.
RESOLVER: Resolver = system_resolver


def parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request URI) of a URL we may call, else Refused."""
    if not isinstance(url, str) or not url:
        raise Refused("no URL")
    if len(url) > MAX_URL:
        raise Refused(f"the URL is longer than {MAX_URL} characters")
    if "\\" in url:
        raise Refused("the URL contains a backslash")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise Refused("the URL contains spaces or control characters")
    try:
        parts = parse_url(url)
    except ValueError as error:
        raise Refused(f"not a URL: {error}") from error
    scheme = (parts.scheme or "").lower()
    if scheme not in DEFAULT_PORTS:
        raise Refused("only http:// and https:// URLs are called")
    if parts.auth is not None or "@" in (parts.netloc or ""):
        raise Refused("the URL carries user info")
    host = (parts.host or "").strip("[]").lower()
    if not host:
        raise Refused("the URL has no host")
    # Defence in depth: the standard library's reading must name the same host.
    try:
        other = urlsplit(url)
        other_host, other_port = (other.hostname or ""), other.port
    except ValueError as error:
        raise Refused(f"not a URL: {error}") from error
    if other_host.lower() != host or (other_port is not None and other_port != parts.port):
        raise Refused("the URL reads differently to different parsers")
    return scheme, host, parts.port or DEFAULT_PORTS[scheme], parts.request_uri


# Only global unicast IPv6 is called; inside it, these prefixes carry an IPv4 address (NAT64, 6to4).
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in prefix for prefix in NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public(address: Address) -> bool:
    """Private, loopback, link-local, multicast, reserved, unspecified, shared (CGNAT); for IPv6
    anything outside global unicast (IPv4-compatible, site-local …) and the public-looking forms that
    carry an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo) of a non-public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return non_public(embedded)
        if address not in GLOBAL_UNICAST_V6:
            return True
    return not address.is_global or address.is_multicast or address.is_unspecified


def check(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> Target:
    """Parses and resolves `url` once; Refused when any address it resolves to is not public
    (unless `allow_private`: the development run)."""
    scheme, host, port, request_uri = parse(url)
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in (resolver or RESOLVER)(host, port)]
        except (OSError, UnicodeError, ValueError) as error:
            raise Refused(f"cannot resolve {host}: {error}") from error
        if not addresses:
            raise Refused(f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            if non_public(address):
                named = "is" if literal is not None else f"resolves to {address},"
                raise Refused(f"{host} {named} a non-public address")
    return Target(scheme, host, port, request_uri, str(addresses[0]))


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]


# What a tenant's endpoint may send back: read up to this, the rest dropped with the connection.
MAX_RESPONSE_BYTES = 64 * 1024


_pools: OrderedDict[tuple[str, str, str, int], urllib3.HTTPConnectionPool] = OrderedDict()
_pools_lock = threading.Lock()
MAX_POOLS = 50


def _pool(target: Target, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    """Keep-alive connections per (scheme, host, checked address, port): a pool never serves
    another address than the one checked for it."""
    key = (target.scheme, target.host, target.address, target.port)
    with _pools_lock:
        pool = _pools.pop(key, None)
        if pool is None:
            if target.scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    target.address,
                    target.port,
                    timeout=timeout,
                    retries=False,
                    maxsize=4,
                    server_hostname=target.host,
                    assert_hostname=target.host,
                    cert_reqs="CERT_REQUIRED",
                )
            else:
                pool = urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=4)
        _pools[key] = pool
        while len(_pools) > MAX_POOLS:
            _, old = _pools.popitem(last=False)
            old.close()
        return pool


def post(
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout: urllib3.Timeout,
    allow_private: bool,
    resolver: Resolver | None = None,
) -> Response:
    """POSTs to `url` through the guard (Refused before any connection); never follows a redirect.
    Raises urllib3's errors for timeouts and connection failures."""
    target = check(url, allow_private=allow_private, resolver=resolver)
    response = _pool(target, timeout).urlopen(
        "POST",
        target.request_uri,
        body=body,
        headers={**headers, "Host": target.host_header},
        redirect=False,
        retries=False,
        timeout=timeout,
        assert_same_host=False,
        preload_content=False,
    )
    exhausted = False
    try:
        response.read(MAX_RESPONSE_BYTES)
        exhausted = not response.read(1)
    finally:
        if exhausted:
            response.release_conn()  # the connection stays for the next call
        else:
            response.close()  # a larger body (or a failed read): not read further, not kept
    return Response(response.status, dict(response.headers))
