"""Whether a host is this machine's loopback: the one check behind every "loopback only"
rule (the fake server, a service without a token, an unauthenticated Ray cluster)."""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names (an IP, or a name resolved here, e.g.
    ``localhost``) is a loopback address; False for anything else or what does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None)
        return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback
                                   for i in infos)
    except (OSError, ValueError, UnicodeError):
        return False
