"""Far-end invitations: an unguessable token with an expiry that the operator can revoke.

One far end at a time: the browser that joined first keeps the call; the same browser may reload and
come back (it carries a per-browser id in a cookie), a different one is turned away while the call is up.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

DEFAULT_TTL_S = 12 * 3600
FAREND_COOKIE = "evercall_farend"


def new_token() -> str:
    """An unguessable URL-safe token (128 bits)."""
    return secrets.token_urlsafe(16)


@dataclass
class Invite:
    """One far-end link. `check` says why a token is refused, or None when it is accepted."""

    ttl_s: float = DEFAULT_TTL_S
    token: str = field(default_factory=new_token)
    created_at: float = field(default_factory=time.time)
    revoked: bool = False

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl_s

    def check(self, token: str, now: float | None = None) -> str | None:
        if not secrets.compare_digest(token.encode(), self.token.encode()):
            return "The invitation code in this link is wrong."
        if self.revoked:
            return "This invitation was withdrawn by the person who sent it."
        if (now if now is not None else time.time()) >= self.expires_at:
            return "This invitation has expired."
        return None

    def renewed(self) -> "Invite":
        """A fresh link with the same lifetime (the old one stops working)."""
        return Invite(ttl_s=self.ttl_s)

    def describe(self) -> dict:
        return {"expires_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.expires_at)),
                "revoked": self.revoked}


class FarEndSeat:
    """Who holds the call: at most one far-end browser, identified by its cookie."""

    def __init__(self) -> None:
        self.holder: str | None = None

    def admit(self, browser_id: str, connected: bool) -> bool:
        """True when this browser may (re)join: the seat is free, or it is theirs, or its holder is gone."""
        if self.holder is None or self.holder == browser_id or not connected:
            self.holder = browser_id
            return True
        return False

    def release(self, browser_id: str) -> None:
        if self.holder == browser_id:
            self.holder = None
