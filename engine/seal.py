"""Seals: HMAC-SHA256 tags under keys derived from the persona store's passphrase.

Files an editor can rewrite (the audit log and its head) carry a seal made with a key that only someone
holding the store passphrase can compute, so a forged, re-chained or truncated history is found. Each use
gets its own key (HKDF from the store key, one `purpose` each), so a seal from one file means nothing in
another; each seal also names what it covers (`label`), so a record's seal cannot pass for a head's.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def subkey(master: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose (e.g. "audit"), derived from the store key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"evercall seal v1 " + purpose.encode("utf-8")).derive(master)


def tag(key: bytes, label: str, data: bytes) -> str:
    """Hex HMAC-SHA256 of `data`, bound to what it covers (`label`)."""
    return hmac.new(key, label.encode("utf-8") + b"\0" + data, hashlib.sha256).hexdigest()


def valid(key: bytes, label: str, data: bytes, seal: object) -> bool:
    """True when `seal` is the tag of `data` under `key` and `label` (compared in constant time)."""
    return isinstance(seal, str) and hmac.compare_digest(seal.encode("ascii", "replace"),
                                                         tag(key, label, data).encode("ascii"))


def store_key(home: Path | str, purpose: str) -> bytes | None:
    """The `purpose` key of the store at `home`, when its passphrase is at hand (env or keyring).

    None when there is no passphrase, no store yet or the passphrase is wrong: writers then record
    unsealed entries, which `evercall audit verify` reports. Never creates a store.
    """
    from engine.vault import CONFIG_NAME, Vault, VaultError, resolve_passphrase

    home = Path(home)
    passphrase = resolve_passphrase(home)
    if not passphrase or not (home / CONFIG_NAME).is_file():
        return None
    try:
        return Vault.open(home, passphrase).subkey(purpose)
    except VaultError:
        return None
