"""Certificates the way kubeadm makes them (crypto only; which SANs go where is kubeadm_certs.py).

Copies kubeadm's pkiutil (cmd/kubeadm/app/util/pkiutil/pki_helpers.go): RSA 2048 keys written as
PKCS#1 "RSA PRIVATE KEY", CAs valid 10 years with keyCertSign, leaves valid 1 year from the CA's
NotBefore with digitalSignature+keyEncipherment and serverAuth/clientAuth, DNS SANs de-duplicated
and sorted, IP SANs de-duplicated in order; and Go's x509 VerifyHostname rules and error text
("x509: certificate is valid for a, b, not c").
Host API, reused by the bed for CAs and kubeconfigs:
  ca = make_ca("kubernetes"); leaf = make_leaf(ca, "kube-apiserver", dns_names=[...], ips=[...])
  client = make_client(ca, "kubernetes-admin", ["kubeadm:cluster-admins"])
  write_pair(pki_dir, "apiserver", leaf); read_pair(pki_dir, "ca")
  kubeconfig("https://kind-control-plane:6443", ca, client)  -> YAML text
Runs with python3-cryptography 38 (Debian bookworm) and newer.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = _dt.timedelta(days=3650)
CERT_VALIDITY = _dt.timedelta(days=365)
SERVER = "server"
CLIENT = "client"


@dataclass(frozen=True)
class CertKey:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return key_pem(self.key)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _serial() -> int:
    return secrets.randbelow(2**63 - 2) + 1


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def not_before(cert: x509.Certificate) -> _dt.datetime:
    v = getattr(cert, "not_valid_before_utc", None)  # cryptography >= 42; older: naive UTC
    return v if v is not None else cert.not_valid_before.replace(tzinfo=_dt.timezone.utc)


def not_after(cert: x509.Certificate) -> _dt.datetime:
    v = getattr(cert, "not_valid_after_utc", None)
    return v if v is not None else cert.not_valid_after.replace(tzinfo=_dt.timezone.utc)


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=True,
        key_cert_sign=ca,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    common_name: str,
    key: rsa.RSAPrivateKey | None = None,
    *,
    serial: int | None = None,
    start: _dt.datetime | None = None,
    dns_names: Sequence[str] | None = None,
) -> CertKey:
    """kubeadm's NewCertificateAuthority. `serial` and `start` default to random and now;
    `dns_names` to [common_name] (kubeadm >= 1.22 writes the CN as a SAN; older ones none)."""
    key = key or new_key()
    start = start or _now()
    if dns_names is None:
        dns_names = [common_name] if common_name else []
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(serial or _serial())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if dns_names:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]), critical=False
        )
    return CertKey(b.sign(key, hashes.SHA256()), key)


def alt_names(dns_names: Iterable[str], ips: Iterable[str]) -> tuple[list[str], list[str]]:
    """kubeadm's RemoveDuplicateAltNames: DNS names as a sorted set, IPs de-duplicated in order."""
    seen: list[str] = []
    for ip in ips:
        s = str(ipaddress.ip_address(ip))
        if s not in seen:
            seen.append(s)
    return sorted(set(dns_names)), seen


def make_leaf(
    ca: CertKey,
    common_name: str,
    organizations: Sequence[str] = (),
    *,
    dns_names: Iterable[str] = (),
    ips: Iterable[str] = (),
    usages: Sequence[str] = (SERVER,),
    key: rsa.RSAPrivateKey | None = None,
    validity: _dt.timedelta = CERT_VALIDITY,
) -> CertKey:
    """kubeadm's NewSignedCert, alt names de-duplicated first (RemoveDuplicateAltNames)."""
    dns, ip_list = alt_names(dns_names, ips)
    return sign_leaf(
        ca,
        common_name,
        organizations,
        dns=dns,
        ips=ip_list,
        usages=usages,
        key=key,
        validity=validity,
    )


def sign_leaf(
    ca: CertKey,
    common_name: str,
    organizations: Sequence[str] = (),
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    usages: Sequence[str] = (SERVER,),
    key: rsa.RSAPrivateKey | None = None,
    validity: _dt.timedelta = CERT_VALIDITY,
    serial: int | None = None,
    signed_at: _dt.datetime | None = None,
) -> CertKey:
    """A leaf with exactly these SANs, in this order. Extensions in the order Go's x509 writes
    them (KeyUsage, ExtKeyUsage, BasicConstraints, AuthorityKeyId, SAN). `key`, `serial` and
    `signed_at` default to new, random and now; NotAfter is `signed_at` + `validity`."""
    key = key or new_key()
    eku = [
        ExtendedKeyUsageOID.SERVER_AUTH if u == SERVER else ExtendedKeyUsageOID.CLIENT_AUTH
        for u in usages
    ]
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or _serial())
        .not_valid_before(not_before(ca.cert))
        .not_valid_after((signed_at or _now()) + validity)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return CertKey(b.sign(ca.key, hashes.SHA256()), key)


def make_client(ca: CertKey, common_name: str, organizations: Sequence[str] = ()) -> CertKey:
    """A kubeconfig client certificate (admin.conf, controller-manager.conf, kubelet.conf...)."""
    return make_leaf(ca, common_name, organizations, usages=(CLIENT,))


def make_self_signed(
    common_name: str, dns_names: Iterable[str] = (), ips: Iterable[str] = ()
) -> CertKey:
    """What the controller-manager and scheduler generate in memory for their secure port."""
    ca = make_ca(f"{common_name}-ca")
    return make_leaf(ca, common_name, dns_names=dns_names, ips=ips)


def write_pair(directory: str | Path, base: str, pair: CertKey) -> None:
    d = Path(directory)
    (d / base).parent.mkdir(parents=True, exist_ok=True)
    (d / f"{base}.crt").write_bytes(pair.cert_pem())
    key_path = d / f"{base}.key"
    key_path.write_bytes(pair.key_pem())
    key_path.chmod(0o600)


def load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def load_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the private key is not in RSA format")
    return key


def read_pair(directory: str | Path, base: str) -> CertKey:
    d = Path(directory)
    return CertKey(
        load_cert((d / f"{base}.crt").read_bytes()), load_key((d / f"{base}.key").read_bytes())
    )


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) of a certificate, in certificate order."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (
        list(ext.get_values_for_type(x509.DNSName)),
        [str(i) for i in ext.get_values_for_type(x509.IPAddress)],
    )


def _dns_match(pattern: str, host: str) -> bool:
    p, h = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if p.startswith("*."):
        return "." in h and h.split(".", 1)[1] == p[2:] and h.split(".", 1)[0] != ""
    return p == h


def hostname_error(cert: x509.Certificate, host: str) -> str | None:
    """Go's Certificate.VerifyHostname: None when `host` is covered, else Go's error text."""
    dns, ips = sans(cert)
    host = host.strip("[]")
    try:
        want = ipaddress.ip_address(host)
    except ValueError:
        if any(_dns_match(d, host) for d in dns):
            return None
        valid = ", ".join(dns)
    else:
        if any(ipaddress.ip_address(i) == want for i in ips):
            return None
        if not ips:
            return f"x509: cannot validate certificate for {host} because it doesn't contain any IP SANs"  # noqa: E501 - upstream's message, kept greppable
        valid = ", ".join(ips)
    if not valid:
        return f"x509: certificate is not valid for any names, but wanted to match {host}"
    return f"x509: certificate is valid for {valid}, not {host}"


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Go's CheckSignatureFrom for RSA CAs (cryptography 38 has no verify_directly_issued_by)."""
    if cert.issuer != ca.subject:
        return False
    public = ca.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or cert.signature_hash_algorithm is None:
        return False
    try:
        public.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cert.signature_hash_algorithm,
        )
    except InvalidSignature:
        return False
    return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(
    server: str,
    ca: CertKey | x509.Certificate,
    client: CertKey,
    user: str = "kubernetes-admin",
    cluster: str = "kubernetes",
) -> str:
    """A kubeconfig as kubeadm writes it (embedded data, one cluster/user/context)."""
    ca_cert = ca.cert if isinstance(ca, CertKey) else ca
    context = f"{user}@{cluster}"
    doc = {
        "apiVersion": "v1",
        "clusters": [
            {
                "cluster": {
                    "certificate-authority-data": _b64(
                        ca_cert.public_bytes(serialization.Encoding.PEM)
                    ),
                    "server": server,
                },
                "name": cluster,
            }
        ],
        "contexts": [{"context": {"cluster": cluster, "user": user}, "name": context}],
        "current-context": context,
        "kind": "Config",
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert_pem()),
                    "client-key-data": _b64(client.key_pem()),
                },
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True)
class Kubeconfig:
    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def parse_kubeconfig(text: str, base_dir: str | Path = "/") -> Kubeconfig:
    """The current context's server, CA and client credentials (inline data or file paths)."""
    doc = yaml.safe_load(text) or {}
    ctx_name = doc.get("current-context")
    contexts = {c["name"]: c.get("context", {}) for c in doc.get("contexts") or []}
    ctx = contexts.get(ctx_name) or next(iter(contexts.values()), {})
    clusters = {c["name"]: c.get("cluster", {}) for c in doc.get("clusters") or []}
    users = {u["name"]: u.get("user", {}) for u in doc.get("users") or []}
    cl = clusters.get(ctx.get("cluster")) or next(iter(clusters.values()), {})
    us = users.get(ctx.get("user")) or next(iter(users.values()), {})

    def data(section: dict[str, str], key: str) -> bytes:
        if section.get(f"{key}-data"):
            return base64.b64decode(section[f"{key}-data"])
        if section.get(key):
            return (Path(base_dir) / section[key]).read_bytes()
        return b""

    return Kubeconfig(
        str(cl.get("server", "")),
        data(cl, "certificate-authority"),
        data(us, "client-certificate"),
        data(us, "client-key"),
    )
