"""Encryption at rest for the persona store: AES-256-GCM under a key derived from a passphrase.

Faces and voices of the dead are biometric data; nothing of them may reach the disk in clear. The key
comes from a passphrase (env `EVERCALL_PASSPHRASE`, else the OS keyring when the `keyring` package is
installed) through scrypt with a per-store salt kept in `<home>/vault.json`, next to a key check value
so a wrong passphrase is refused before any file is read or written.

An encrypted file is MAGIC + VERSION + 12-byte nonce + ciphertext-with-tag. The associated data binds
the header and the file's logical name (e.g. `personas/<id>/photo`), so files cannot be swapped between
slots or personas. Writes go to a temp file in the same folder, are fsynced and then renamed over the
target: a crash or a full disk leaves the old file, never a half-written one. The temp file only ever
holds ciphertext, because encryption happens in memory first.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from engine.errors import EvercallError

MAGIC = b"EVCV"
VERSION = 1
HEADER = MAGIC + bytes([VERSION])
NONCE_BYTES = 12
TAG_BYTES = 16
CONFIG_NAME = "vault.json"
PASSPHRASE_ENV = "EVERCALL_PASSPHRASE"
SCRYPT_N_ENV = "EVERCALL_SCRYPT_N"
DEFAULT_SCRYPT_N = 2**17  # ~0.3 s and 128 MiB per unlock: slow enough to make guessing costly
MAX_SCRYPT_N = 2**20  # refuse a config that would make unlocking exhaust memory
KEYRING_SERVICE = "evercall"
_CHECK_PLAIN = b"evercall vault key check v1"


class VaultError(EvercallError):
    """The persona store cannot be unlocked, read or written."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def resolve_passphrase(home: Path) -> str | None:
    """The passphrase from the environment, else from the OS keyring (optional), else None."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    try:
        import keyring  # optional: only when installed
    except ImportError:
        return None
    try:
        return keyring.get_password(KEYRING_SERVICE, str(home)) or None
    except Exception:  # any backend failure means "no keyring"; the env var still works
        return None


def scrypt_n_from_env() -> int:
    """Work factor for a NEW store; tests lower it with EVERCALL_SCRYPT_N."""
    text = os.environ.get(SCRYPT_N_ENV)
    if not text:
        return DEFAULT_SCRYPT_N
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 2 or n > MAX_SCRYPT_N or n & (n - 1):
        raise VaultError(f"{SCRYPT_N_ENV}={text} is not a power of two between 2 and {MAX_SCRYPT_N}: "
                         "unset it to use the default")
    return n


_KEYS: dict[tuple[bytes, bytes, int, int, int], bytes] = {}  # scrypt results of this process


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """scrypt, once per process for each passphrase and store (later unlocks, e.g. to seal the audit log,
    reuse it instead of spending another 0.3 s and 128 MiB)."""
    cache = (hashlib.sha256(passphrase.encode("utf-8")).digest(), salt, n, r, p)
    if cache not in _KEYS:
        _KEYS[cache] = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
    return _KEYS[cache]


def _config_digest(config: dict) -> str:
    """SHA-256 of the key file's settings, so a damaged file is told apart from a wrong passphrase."""
    body = {key: value for key, value in config.items() if key != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (made 0600 if absent) across processes: one writer at a time."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink durable; some filesystems refuse fsync on a folder, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, what: str | None = None) -> None:
    """Write `data` to `path` so a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = -1
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        label = what or str(path)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise VaultError(f"not enough disk space to save {label} in {path.parent}: free some space and "
                             "try again (nothing was changed)") from exc
        raise VaultError(f"cannot write {label} to {path.parent} ({exc.strerror or exc}): check the folder "
                         "exists and is writable (nothing was changed)") from exc


def _bundles(home: Path) -> int:
    """How many persona bundles the store at `home` holds (hidden staging folders aside)."""
    folder = home / "personas"
    if not folder.is_dir():
        return 0
    return sum(1 for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))


class Vault:
    """An unlocked store key; seal/unseal bytes under a logical name, read/write encrypted files."""

    def __init__(self, home: Path, key: bytes) -> None:
        self.home = Path(home)
        self._aead = AESGCM(key)
        self._key = key

    def subkey(self, purpose: str) -> bytes:
        """A key for one other use of the passphrase (sealing the audit log), independent of this one."""
        from engine.seal import subkey

        return subkey(self._key, purpose)

    @classmethod
    def open(cls, home: Path, passphrase: str | None = None, create: bool = False) -> "Vault":
        """Unlock the store at `home`; with `create`, set it up on first use. Never writes when refusing."""
        home = Path(home)
        passphrase = passphrase or resolve_passphrase(home)
        if not passphrase:
            raise VaultError(f"no passphrase for the persona store at {home}: set {PASSPHRASE_ENV} (or save it "
                             f"in the OS keyring under service '{KEYRING_SERVICE}')")
        config_path = home / CONFIG_NAME
        if not config_path.exists():
            held = _bundles(home)
            if held:  # a new key could never open them: refuse rather than start a second, empty store
                raise VaultError(f"the store key file {config_path} is missing, yet the store holds {held} "
                                 f"persona(s): restore {CONFIG_NAME} from a backup (nothing was changed)")
            if not create:
                raise VaultError(f"no persona store at {home}: create a persona first, or set EVERCALL_HOME "
                                 "to the folder that holds the store")
            return cls._create(home, passphrase)
        n, r, p, salt, check = cls._read_config(config_path)
        vault = cls(home, _derive(passphrase, salt, n, r, p))
        try:
            plain = vault._aead.decrypt(check[:NONCE_BYTES], check[NONCE_BYTES:], b"check" + salt)
        except InvalidTag:
            plain = b""
        if plain != _CHECK_PLAIN:
            raise VaultError(f"wrong passphrase for the persona store at {home}: set {PASSPHRASE_ENV} to the "
                             "passphrase the store was created with (nothing was changed)")
        return vault

    @staticmethod
    def _read_config(path: Path) -> tuple[int, int, int, bytes, bytes]:
        try:
            config = json.loads(path.read_text("utf-8"))
            if "digest" in config and config["digest"] != _config_digest(config):
                raise ValueError("its content does not match its checksum")
            kdf = config["kdf"]
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            salt, check = _unb64(kdf["salt"]), _unb64(config["check"])
            if config.get("version") != VERSION or kdf.get("name") != "scrypt":
                raise ValueError("unsupported version")
            if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
                raise ValueError("scrypt parameters out of range")
            if len(salt) < 16 or len(check) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("salt or check value too short")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VaultError(f"the store key file {path} is damaged ({exc}): restore it from a backup; "
                             "without it the personas cannot be decrypted") from exc
        return n, r, p, salt, check

    @classmethod
    def _create(cls, home: Path, passphrase: str) -> "Vault":
        n, r, p = scrypt_n_from_env(), 8, 1
        salt = secrets.token_bytes(16)
        vault = cls(home, _derive(passphrase, salt, n, r, p))
        nonce = secrets.token_bytes(NONCE_BYTES)
        check = nonce + vault._aead.encrypt(nonce, _CHECK_PLAIN, b"check" + salt)
        config = {"format": "evercall-vault", "version": VERSION, "check": _b64(check),
                  "kdf": {"name": "scrypt", "n": n, "r": r, "p": p, "salt": _b64(salt)}}
        config["digest"] = _config_digest(config)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL-like: a store created by another process in the meantime wins; re-open against it.
        tmp = home / f".{CONFIG_NAME}.{secrets.token_hex(4)}.tmp"
        atomic_write(tmp, json.dumps(config, indent=1).encode("utf-8"), "the store key file")
        try:
            os.link(tmp, home / CONFIG_NAME)
        except FileExistsError:
            return cls.open(home, passphrase)
        except OSError as exc:
            raise VaultError(f"cannot create the persona store key file in {home} ({exc.strerror}): check "
                             "the folder is writable") from exc
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(home)
        return vault

    def seal(self, name: str, plaintext: bytes) -> bytes:
        """Encrypt in memory; `name` is the logical slot the blob belongs to."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return HEADER + nonce + self._aead.encrypt(nonce, plaintext, HEADER + name.encode("utf-8"))

    def unseal(self, name: str, blob: bytes, where: str) -> bytes:
        """Decrypt a blob sealed under `name`; raise VaultError naming `where` if damaged or moved."""
        if len(blob) < len(HEADER) + NONCE_BYTES + TAG_BYTES or not blob.startswith(MAGIC):
            raise VaultError(f"{where} is truncated or not an evercall file: restore it from a backup, or "
                             "delete the persona and create it again")
        if blob[len(MAGIC)] != VERSION:
            raise VaultError(f"{where} was written by a newer evercall (format {blob[len(MAGIC)]}): update "
                             "evercall")
        nonce = blob[len(HEADER):len(HEADER) + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[len(HEADER) + NONCE_BYTES:], HEADER + name.encode("utf-8"))
        except InvalidTag as exc:
            raise VaultError(f"{where} is damaged or was altered (it does not decrypt): restore it from a "
                             "backup, or delete the persona and create it again") from exc

    def write(self, path: Path, name: str, plaintext: bytes) -> bytes:
        """Seal and atomically write; returns the ciphertext so callers can hash what is on disk."""
        blob = self.seal(name, plaintext)
        atomic_write(path, blob, f"encrypted {Path(name).name}")
        return blob


class VaultOpener:
    """A store's vault, opened on first use and then kept: the passphrase is asked for only when a key is
    needed, once. The persona store and the objection register share one, so they share one unlock."""

    def __init__(self, home: Path, passphrase: str | None = None) -> None:
        self.home, self._passphrase = home, passphrase
        self._vault: Vault | None = None

    def __call__(self, create: bool = False) -> Vault:
        if self._vault is None:
            self._vault = Vault.open(self.home, self._passphrase, create=create)
        return self._vault

    def audit_key(self) -> bytes | None:
        """The key that seals the audit log: from the store's passphrase; None when there is no store."""
        try:
            return self().subkey("audit")
        except VaultError:
            return None
