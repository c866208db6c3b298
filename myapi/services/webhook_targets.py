"""Where a webhook may POST (DESIGN §11, outbound safety against SSRF).

http(s) URLs only, without credentials in them; the host's addresses (a
literal IP as it is, a name resolved with a short timeout) must all be
public: private, loopback, link-local (which holds the cloud metadata
address 169.254.169.254), shared (100.64/10, Alibaba's metadata), multicast,
reserved and unspecified addresses are refused, and so are IPv6's unique-local
(fd00:ec2::254, AWS's IPv6 metadata) and IPv4-mapped forms of any of those,
unless ``MYAPI_WEBHOOK_ALLOW_PRIVATE=true`` (tests, local set-ups).

Checked when a subscription is made or its URL changes (400 naming ``url``)
and again by the worker before each send, against the addresses it then
connects to (a name may resolve elsewhere later: DNS rebinding). No Flask.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from urllib.parse import urlsplit

from .errors import Invalid

RESOLVE_TIMEOUT = 2.0  # seconds: getaddrinfo has no timeout of its own
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """Why a URL may not be a webhook target (the message names the reason, never secrets)."""


def is_public(address: Address) -> bool:
    """Whether an address is a public unicast one (not private, loopback, link-local, metadata...)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified
                                       or address.is_link_local or address.is_loopback or address.is_private)


def split_target(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a well-formed http(s) URL; TargetRefused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TargetRefused(f"not a URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("must be an http or https URL")
    if not parts.hostname:
        raise TargetRefused("must name a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("must not hold credentials (the signature authenticates the sender)")
    if parts.fragment:
        raise TargetRefused("must not have a fragment")
    return scheme, parts.hostname.rstrip(".").lower(), port or (443 if scheme == "https" else 80)


def resolve(host: str, port: int, timeout: float = RESOLVE_TIMEOUT) -> list[Address]:
    """Every address of ``host`` (a literal IP: itself); TargetRefused when it cannot be resolved in time."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise TargetRefused(f"the host {host[:100]} could not be resolved within {timeout:g} s") from None
    except OSError:
        raise TargetRefused(f"the host {host[:100]} could not be resolved") from None
    found = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])  # drop an IPv6 zone
        if address not in found:
            found.append(address)
    if not found:
        raise TargetRefused(f"the host {host[:100]} has no address")
    return found


def allowed_addresses(url: str, *, allow_private: bool, timeout: float = RESOLVE_TIMEOUT) -> list[Address]:
    """The addresses a delivery to ``url`` may connect to; TargetRefused when any is not allowed.

    Every address of the name must be public (a name with one private
    address among public ones is refused: a client would pick either).
    """
    _scheme, host, port = split_target(url)
    if not allow_private and host in METADATA_NAMES:
        raise TargetRefused("is a cloud metadata address")
    addresses = resolve(host, port, timeout)
    if not allow_private:
        refused = [address for address in addresses if not is_public(address)]
        if refused:
            raise TargetRefused(f"resolves to a private, loopback, link-local or reserved address ({refused[0]}); "
                                "set MYAPI_WEBHOOK_ALLOW_PRIVATE=true to allow such targets")
    return addresses


def check_target(url: str, *, allow_private: bool) -> None:
    """Invalid (400 naming ``url``) unless ``url`` may be a webhook target."""
    try:
        allowed_addresses(url, allow_private=allow_private)
    except TargetRefused as error:
        raise Invalid("The webhook URL may not be used.", {"url": str(error)}) from None
