"""Whether a host name or address stays on this machine (loopback)."""

from __future__ import annotations

import ipaddress
import re

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses: 127.0.0.0/8, and ::1 bare (a listening
    address) or in brackets (a URL's or Host header's form); brackets hold only IPv6."""
    name = host.strip().lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        if name.startswith("[") and name.endswith("]"):
            return ipaddress.IPv6Address(name[1:-1]).is_loopback
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# RFC 9110 Host = uri-host [ ":" port ] (RFC 3986): an IPv6 literal in brackets, or a name or IPv4
# address of unreserved characters, percent-encodings and sub-delimiters; the port all digits.
_HOST_HEADER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+,;=-]*)(?::[0-9]*)?")


def host_of_header(host_header: str) -> str | None:
    """The host part of an HTTP Host header (`127.0.0.1:8000` -> `127.0.0.1`, `[::1]:80` ->
    `[::1]`), or None when the header is not of that form (`[::1]evil.test`, `::1`, `a:1:2`)."""
    match = _HOST_HEADER.fullmatch(host_header)
    return None if match is None else match.group(1)
