"""Certificates for fake kubeadm runs: apply keeps a regenerated pair only when the new
certificate parses and covers the node's address (kindfix/apply.py _cert_verifier)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, ok

# kubeadm's files for each `kubeadm init phase certs` phase kindfix runs
PHASE_FILES = {"apiserver": "/etc/kubernetes/pki/apiserver",
               "etcd-server": "/etc/kubernetes/pki/etcd/server",
               "etcd-peer": "/etc/kubernetes/pki/etcd/peer"}


@lru_cache(maxsize=1)
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@lru_cache(maxsize=64)
def cert_pem(name: str, ips: tuple[str, ...]) -> bytes:
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    names: list[x509.GeneralName] = [x509.DNSName(name), x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd-ca")]))
            .public_key(_key().public_key()).serial_number(7)
            .not_valid_before(now).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(_key(), hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def kubeadm(ips: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    """A `kubeadm init phase certs PHASE` handler that makes the phase's pair for the node's
    addresses `ips[node]` (what kubeadm reads from the rewritten kubeadm.conf)."""
    def run(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        base = PHASE_FILES[argv[4]]
        node.files[base + ".crt"] = cert_pem(node.name, tuple(ips[node.name]))
        node.files[base + ".key"] = b"-----BEGIN EC PRIVATE KEY-----\nnew\n"
        return ok()
    return run
