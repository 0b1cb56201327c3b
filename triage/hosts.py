"""Whether a host is this machine: where a secret may travel without TLS."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """Decided without a DNS lookup: no name but localhost is taken to be this machine."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
