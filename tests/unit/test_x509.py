"""The stdlib X.509 reader, checked against certificates made (and parsed) by `cryptography`."""

from __future__ import annotations

import base64
import ipaddress
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindfix.errors import KindfixError
from kindfix.x509 import DERError, parse_der_certificate, parse_pem_certificates

KEY = ec.generate_private_key(ec.SECP256R1())
NOW = datetime(2026, 11, 25, 18, 0, 0, tzinfo=timezone.utc)


def make_cert(
    *,
    cn: str | None = "kube-apiserver",
    issuer_cn: str = "kubernetes",
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    san: bool = True,
    not_before: datetime = NOW,
    not_after: datetime | None = None,
    serial: int = 0x1234,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kind"),
                    x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn),
                ]
            )
        )
        .public_key(KEY.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after or not_before + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if san:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(KEY, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_kubeadm_apiserver_cert_dual_stack() -> None:
    dns = ("kind-control-plane", "kubernetes", "kubernetes.default", "localhost")
    ips = ("10.96.0.1", "172.18.0.3", "127.0.0.1", "FC00:F853:0CCD:E793:0:0:0:3", "::1")
    [cert] = parse_pem_certificates(pem(make_cert(dns=dns, ips=ips)))
    assert cert.common_name == "kube-apiserver"
    assert cert.issuer_common_name == "kubernetes"
    assert cert.sans_dns == dns
    # IPv6 comes back in canonical compressed, lower-case form.
    assert cert.sans_ip == ("10.96.0.1", "172.18.0.3", "127.0.0.1", "fc00:f853:ccd:e793::3", "::1")
    assert cert.has_san_extension
    assert cert.serial == 0x1234
    assert cert.not_before == NOW
    assert cert.not_after == NOW + timedelta(days=365)
    assert cert.covers_ip("fc00:f853:ccd:e793:0::3")
    assert not cert.covers_ip("172.18.0.4")
    assert not cert.covers_ip("not-an-ip")


def test_cert_without_san_extension() -> None:
    [cert] = parse_pem_certificates(pem(make_cert(cn="etcd-ca", san=False)))
    assert cert.common_name == "etcd-ca"
    assert cert.sans_dns == ()
    assert cert.sans_ip == ()
    assert not cert.has_san_extension


def test_cert_without_common_name() -> None:
    [cert] = parse_pem_certificates(pem(make_cert(cn=None, dns=("a",))))
    assert cert.common_name is None
    assert cert.sans_dns == ("a",)


def test_utf8_common_name() -> None:
    [cert] = parse_pem_certificates(pem(make_cert(cn="nœud-ç")))
    assert cert.common_name == "nœud-ç"


def test_generalized_time_after_2049_and_utctime_before_2000() -> None:
    start = datetime(1999, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    end = datetime(2051, 6, 7, 8, 9, 10, tzinfo=timezone.utc)
    [cert] = parse_pem_certificates(pem(make_cert(not_before=start, not_after=end)))
    assert cert.not_before == start
    assert cert.not_after == end


def test_multiple_certs_and_other_blocks_in_one_pem() -> None:
    key_pem = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    text = (
        "leading junk\n"
        + pem(make_cert(cn="etcd-server", ips=("172.18.0.2",)))
        + key_pem
        + pem(make_cert(cn="etcd-peer", ips=("172.18.0.4",)))
    )
    certs = parse_pem_certificates(text.encode())
    assert [(c.common_name, c.sans_ip) for c in certs] == [
        ("etcd-server", ("172.18.0.2",)),
        ("etcd-peer", ("172.18.0.4",)),
    ]


def test_crlf_line_endings() -> None:
    text = pem(make_cert(dns=("x",))).replace("\n", "\r\n")
    assert parse_pem_certificates(text)[0].sans_dns == ("x",)


def test_no_certificate_is_a_clear_error() -> None:
    with pytest.raises(KindfixError) as info:
        parse_pem_certificates("hello, this is not a certificate")
    assert info.value.message == "no PEM certificate found"
    assert info.value.hint is not None


def test_bad_base64_is_a_clear_error() -> None:
    text = "-----BEGIN CERTIFICATE-----\nMIIB*&^%\n-----END CERTIFICATE-----\n"
    with pytest.raises(KindfixError, match=r"certificate #1: invalid base64"):
        parse_pem_certificates(text)


def test_truncated_der_is_a_clear_error() -> None:
    der = make_cert(dns=("a",)).public_bytes(serialization.Encoding.DER)
    body = base64.encodebytes(der[: len(der) // 2]).decode()
    text = f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"
    good = pem(make_cert())
    with pytest.raises(KindfixError, match=r"certificate #2: malformed DER"):
        parse_pem_certificates(good + text)


def test_trailing_bytes_rejected() -> None:
    der = make_cert().public_bytes(serialization.Encoding.DER)
    with pytest.raises(DERError, match="trailing bytes"):
        parse_der_certificate(der + b"\x00")


def test_every_truncation_is_rejected() -> None:
    der = make_cert(dns=("a",), ips=("::1",)).public_bytes(serialization.Encoding.DER)
    rejected = 0
    for size in range(len(der)):
        with pytest.raises(DERError):  # never IndexError or a wrong result
            parse_der_certificate(der[:size])
        rejected += 1
    assert rejected == len(der)


CORRUPTIBLE = make_cert(dns=("node",), ips=("172.18.0.2",)).public_bytes(serialization.Encoding.DER)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(CORRUPTIBLE) - 1), st.integers(1, 255))
def test_corrupted_der_fails_cleanly(offset: int, xor: int) -> None:
    # A flipped byte either still parses (it hit a signature or key byte) or raises DERError;
    # never IndexError, UnicodeError or a hang.
    data = bytearray(CORRUPTIBLE)
    data[offset] ^= xor
    try:
        cert = parse_der_certificate(bytes(data))
    except DERError:
        return
    assert all(isinstance(ip, str) for ip in cert.sans_ip)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ips=st.lists(st.ip_addresses(), max_size=6),
    dns=st.lists(
        st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
        max_size=5,
    ),
    serial=st.integers(min_value=1, max_value=2**159 - 1),
)
def test_matches_cryptography(
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address], dns: list[str], serial: int
) -> None:
    made = make_cert(dns=tuple(dns), ips=tuple(str(i) for i in ips), serial=serial)
    [cert] = parse_pem_certificates(pem(made))
    reference = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(cert.sans_dns) == reference.get_values_for_type(x509.DNSName)
    assert list(cert.sans_ip) == [str(i) for i in reference.get_values_for_type(x509.IPAddress)]
    assert cert.serial == made.serial_number
    assert cert.not_after == made.not_valid_after_utc
