"""Far-end invitations: an unguessable token with an expiry that the operator can revoke.

One far end at a time: the browser that joined first keeps the call; the same browser may reload and
come back (it carries a per-browser id in a cookie), a different one is turned away while the call is up.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

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
        if not isinstance(token, str) or not secrets.compare_digest(token.encode("utf-8", "replace"),
                                                                       self.token.encode()):
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


SEAT_CONNECT_TIMEOUT_S = 10.0  # an offer must reach "connected" within this, or its seat is freed
SEAT_LOST_GRACE_S = 5.0  # a connected far end heard from no more for this long has gone


@dataclass
class Claim:
    """One far end's hold on the seat: who, since when, and how far its connection got."""

    holder: str
    ident: int
    since: float
    state: str = "offered"  # offered -> connected; any -> gone (freed)
    heard_at: float | None = None  # last sign of life (media or a report) once connected


class FarEndSeat:
    """Who holds the call: at most one far-end browser, identified by its cookie.

    An explicit state machine, so a far end that never connects or vanishes cannot keep others out:
      free --admit--> offered --connected--> connected --release--> free
      offered for longer than `connect_timeout_s`                          --> free
      connected but not heard from (media, reports) for `lost_grace_s`      --> free (lapsed)
    A lapsed far end heard from again before anyone else joined gets its seat back: the last claim is kept
    until it is replaced or released, and "lapsed" is read from it (connected, not heard from in time), so
    no second record can disagree with it. The same browser may always come back (a reload replaces its
    old claim). Each claim has an id, so late events of a replaced connection cannot free the seat of the
    one that replaced it.
    """

    def __init__(self, connect_timeout_s: float = SEAT_CONNECT_TIMEOUT_S, lost_grace_s: float = SEAT_LOST_GRACE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.lost_grace_s = lost_grace_s
        self._clock = clock
        self._claim: Claim | None = None  # the last claim, expired or not, until replaced or released
        self._next = 0

    def _current(self) -> Claim | None:
        """The claim that holds the seat now, or None when the seat is free."""
        claim = self._claim
        return None if claim is None or self._expired(claim, self._clock()) else claim

    def _lapsed(self) -> Claim | None:
        """The connected claim that went silent (the seat is free), until someone else joins."""
        claim = self._claim
        if claim is not None and claim.state == "connected" and self._expired(claim, self._clock()):
            return claim
        return None

    def _expired(self, claim: Claim, now: float) -> bool:
        if claim.state == "offered":
            return now - claim.since > self.connect_timeout_s
        if claim.state == "connected" and claim.heard_at is not None:
            return now - claim.heard_at > self.lost_grace_s
        return False

    @property
    def holder(self) -> str | None:
        claim = self._current()
        return claim.holder if claim else None

    @property
    def state(self) -> str:
        claim = self._current()
        return claim.state if claim else "free"

    @property
    def last_heard(self) -> float | None:
        """When the connected far end last gave a sign of life (clock seconds), if it has."""
        claim = self._current()
        return claim.heard_at if claim else None

    def admit(self, browser_id: str) -> int | None:
        """A new claim id when this browser may (re)join: the seat is free, or theirs; None when taken."""
        claim = self._current()
        if claim is not None and claim.holder != browser_id:
            return None
        self._next += 1
        self._claim = Claim(browser_id, self._next, self._clock())
        return self._next

    def is_current(self, ident: int) -> bool:
        claim = self._current()
        return claim is not None and claim.ident == ident

    def expired(self, ident: int) -> bool:
        """True when claim `ident` no longer holds the seat (timed out, released or replaced)."""
        return not self.is_current(ident)

    def connected(self, ident: int) -> None:
        claim = self._current()
        if claim is not None and claim.ident == ident and claim.state == "offered":
            claim.state = "connected"

    def heard(self, ident: int | None = None, browser_id: str | None = None) -> None:
        """A sign of life from the far end: media arrived, or its page posted a report."""
        claim = self._current() or self._lapsed()  # a lapsed one is back before anyone else took the seat
        if claim is not None and claim.state == "connected" and (claim.ident == ident or claim.holder == browser_id):
            claim.heard_at = self._clock()

    def release(self, ident: int) -> None:
        if self._claim is not None and self._claim.ident == ident:
            self._claim = None

    def clear(self) -> None:
        self._claim = None
