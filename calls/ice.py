"""ICE settings for calls that must work on loopback and a LAN with no public STUN server.

aioice leaves 127.0.0.1 out of its host candidates, so a far end on the same machine (a test, or a
browser on the operator's own computer) could never connect. `allow_loopback` adds it back once.
"""

from __future__ import annotations

import aioice.ice
from aiortc import RTCConfiguration

_original = aioice.ice.get_host_addresses


def _with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _original(use_ipv4, use_ipv6)
    if use_ipv4 and "127.0.0.1" not in addresses:
        addresses.append("127.0.0.1")
    return addresses


def allow_loopback() -> None:
    """Offer 127.0.0.1 as a host candidate too (idempotent)."""
    aioice.ice.get_host_addresses = _with_loopback


def rtc_configuration() -> RTCConfiguration:
    """No STUN/TURN by default: host candidates only, nothing leaves the machine's networks."""
    allow_loopback()
    return RTCConfiguration(iceServers=[])
