"""TLS for calls beyond this machine: browsers only give a page camera and microphone on a secure origin.

A loopback bind needs nothing (http://127.0.0.1 counts as secure). Any other bind must be HTTPS: with the
user's own certificate, or with a self-signed one made here, whose SHA-256 fingerprint is printed so the
far end can compare it with what the browser shows.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from engine.errors import EvercallError

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_tls_for(host: str, has_tls: bool) -> None:
    """Refuse a non-loopback bind without TLS, naming the flags that fix it."""
    if not has_tls and not is_loopback(host):
        raise EvercallError(
            f"refusing to serve on {host} without TLS: browsers give camera and microphone only to secure "
            "pages, and the call would cross the network unencrypted; pass --tls-cert FILE --tls-key FILE, "
            "or --tls-self-signed")


def self_signed(folder: Path, host: str) -> tuple[Path, Path, str]:
    """A self-signed certificate for `host` in `folder` (made once, reused); returns (cert, key, sha256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    safe = host.replace(":", "_").replace("/", "_")
    cert_path, key_path = folder / f"{safe}.crt", folder / f"{safe}.key"
    if not (cert_path.is_file() and key_path.is_file()):
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
        now = dt.datetime.now(dt.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"evercall {host}")])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .sign(key, hashes.SHA256()))
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, fingerprint(cert_path)


def fingerprint(cert_path: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """An SSL context for aiohttp, or a one-line error when the files do not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise EvercallError(f"cannot load the TLS certificate {cert} with key {key} ({exc}): give a PEM "
                            "certificate and its private key, or use --tls-self-signed") from exc
    return context
