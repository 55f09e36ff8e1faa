"""The store passphrase on its way to a worker: sealed to that worker's own key, never in the clear.

Each call actor makes an X25519 key pair when it starts and hands out only the public half; the front door
seals the passphrase to it (an ephemeral X25519 exchange, HKDF-SHA256, AES-GCM). Ray's own channels may
be plain gRPC inside a cluster: what crosses them is the sealed box, which only that actor can open.
The persona itself never travels: each worker opens it from its own encrypted store.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"evercall cluster passphrase v1"


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key(shared: bytes, sender: bytes, receiver: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=sender + receiver, info=_INFO).derive(shared)


class Opener:
    """A worker's key pair: `public` goes to the front door, `open` unseals what comes back."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public = _raw(self._private.public_key())

    def open(self, box: bytes) -> str:
        sender, nonce, body = box[:32], box[32:44], box[44:]
        shared = self._private.exchange(X25519PublicKey.from_public_bytes(sender))
        return AESGCM(_key(shared, sender, self.public)).decrypt(nonce, body, _INFO).decode("utf-8")


def seal(secret: str, receiver_public: bytes) -> bytes:
    """`secret` readable only by the holder of the private half of `receiver_public` (32 raw bytes)."""
    ephemeral = X25519PrivateKey.generate()
    sender = _raw(ephemeral.public_key())
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(receiver_public))
    nonce = os.urandom(12)
    return sender + nonce + AESGCM(_key(shared, sender, receiver_public)).encrypt(nonce, secret.encode("utf-8"), _INFO)
