"""X.509 for the test clusters and servers: one certificate builder, and the sets made with it.

:func:`write_pki` makes the control plane's CA, serving and admin certificates;
:func:`write_client_cert` signs a client certificate with that CA (the real node's kubelet);
:func:`write_self_signed` makes a self-signed server certificate (a TLS redis-server).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_key(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def cert(
    subject: x509.Name,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: x509.Name,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    ca: bool = False,
    server_names: list[str] | None = None,
    client: bool = False,
    days: int = 7,
) -> x509.Certificate:
    """A certificate for ``key``, signed by ``issuer_key``.

    ``ca``: may sign others (with key usage cert-sign, unless it also serves ``server_names``:
    a self-signed server certificate). ``server_names``: IP addresses and DNS names it serves.
    ``client``: usable as a client certificate.
    """
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca and not server_names:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    if server_names:
        sans: list[x509.GeneralName] = []
        for host in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not ca:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if server_names:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    into: Path, stem: str, key: CertificateIssuerPrivateKeyTypes, crt: x509.Certificate
) -> None:
    (into / f"{stem}.key").write_bytes(pem_key(key))
    (into / f"{stem}.crt").write_bytes(pem_cert(crt))


API_SERVER_NAMES = [
    "127.0.0.1",
    "10.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]


def write_pki(pki: Path, extra_server_names: list[str] | None = None) -> None:
    """CA, API server serving cert, admin client cert (system:masters), service-account key."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = rsa_key()
    ca_name = name("channelapp-test-ca")
    _write(pki, "ca", ca_key, cert(ca_name, ca_key, ca_name, ca_key, ca=True))
    server_key = rsa_key()
    server_names = [*API_SERVER_NAMES, *(extra_server_names or [])]
    _write(
        pki,
        "apiserver",
        server_key,
        cert(name("kube-apiserver"), server_key, ca_name, ca_key, server_names=server_names),
    )
    admin_key = rsa_key()
    admin = cert(
        name("channelapp-admin", "system:masters"), admin_key, ca_name, ca_key, client=True
    )
    _write(pki, "admin", admin_key, admin)
    sa_key = rsa_key()
    (pki / "sa.key").write_bytes(pem_key(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def write_client_cert(ca_dir: Path, into: Path, stem: str, subject: x509.Name) -> None:
    """``into/stem.crt`` and ``.key``: a client certificate signed by ``ca_dir``'s ca.crt/ca.key."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    key = rsa_key()
    crt = cert(subject, key, ca.subject, ca_key, client=True)  # type: ignore[arg-type]
    into.mkdir(parents=True, exist_ok=True)
    _write(into, stem, key, crt)


def write_self_signed(cert_path: Path, key_path: Path, host: str = "127.0.0.1") -> None:
    """A self-signed server certificate for ``host`` (its own CA), e.g. for a TLS redis-server."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = name(host)
    crt = cert(subject, key, subject, key, ca=True, server_names=[host], days=1)
    cert_path.write_bytes(pem_cert(crt))
    key_path.write_bytes(pem_key(key))
