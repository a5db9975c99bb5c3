"""X.509 certificates from PEM, with the standard library only.

kindfix must read the SANs of apiserver.crt and etcd's server/peer certificates without the
`cryptography` wheel at runtime, so this is a small DER reader for just the fields an address
audit needs (RFC 5280 section 4.1): subject and issuer CN, validity, serial, and the
subjectAltName extension (DNS names, IP addresses; email and URI names kept as they are).
It validates structure, not signatures.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from kindfix.errors import KindfixError

_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.DOTALL
)

# DER tags (universal, or context-specific as they appear in certificates).
_BOOLEAN = 0x01
_INTEGER = 0x02
_OCTET_STRING = 0x04
_OID = 0x06
_SEQUENCE = 0x30
_SET = 0x31
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_VERSION = 0xA0  # [0] EXPLICIT in TBSCertificate
_EXTENSIONS = 0xA3  # [3] EXPLICIT in TBSCertificate
# GeneralName choices, [n] IMPLICIT (RFC 5280 4.2.1.6).
_SAN_EMAIL = 0x81
_SAN_DNS = 0x82
_SAN_URI = 0x86
_SAN_IP = 0x87

_OID_COMMON_NAME = bytes([0x55, 0x04, 0x03])  # 2.5.4.3
_OID_SUBJECT_ALT_NAME = bytes([0x55, 0x1D, 0x11])  # 2.5.29.17

_HINT = "the file should hold PEM certificates (-----BEGIN CERTIFICATE-----)"


class DERError(ValueError):
    """Malformed DER; turned into a KindfixError naming the certificate."""


@dataclass(frozen=True)
class Certificate:
    """What an address audit needs from one certificate."""

    common_name: str | None
    issuer_common_name: str | None
    not_before: datetime  # timezone-aware, UTC
    not_after: datetime
    serial: int
    sans_dns: tuple[str, ...] = ()
    sans_ip: tuple[str, ...] = ()  # canonical (compressed IPv6) text
    sans_email: tuple[str, ...] = ()
    sans_uri: tuple[str, ...] = ()
    has_san_extension: bool = False

    def covers_ip(self, address: str) -> bool:
        """True when `address` (any textual form) is one of the IP SANs."""
        try:
            wanted = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ipaddress.ip_address(ip) == wanted for ip in self.sans_ip)


def parse_pem_certificates(text: str | bytes) -> list[Certificate]:
    """Every CERTIFICATE block of `text`, in order; other PEM blocks (keys) are skipped.

    Raises KindfixError when there is no certificate or one of them is malformed.
    """
    data = text.encode("ascii", errors="replace") if isinstance(text, str) else text
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        raise KindfixError("no PEM certificate found", hint=_HINT)
    certificates = []
    for index, block in enumerate(blocks, start=1):
        try:
            der = base64.b64decode(b"".join(block.split()), validate=True)
        except (binascii.Error, ValueError) as err:
            raise KindfixError(
                f"certificate #{index}: invalid base64 in PEM block ({err})", hint=_HINT
            ) from err
        try:
            certificates.append(parse_der_certificate(der))
        except DERError as err:
            raise KindfixError(f"certificate #{index}: malformed DER ({err})", hint=_HINT) from err
    return certificates


def parse_der_certificate(der: bytes) -> Certificate:
    """One DER-encoded certificate; raises DERError when malformed."""
    cert, end = _expect(der, 0, _SEQUENCE, "Certificate")
    if end != len(der):
        raise DERError("trailing bytes after the certificate")
    pos, tbs_end = _expect(der, cert, _SEQUENCE, "TBSCertificate")
    tag, _, end = _tlv(der, pos, tbs_end)
    if tag == _VERSION:
        pos = end
    serial_start, pos = _expect(der, pos, _INTEGER, "serialNumber", tbs_end)
    serial = int.from_bytes(der[serial_start:pos], "big", signed=True)
    _, pos = _expect(der, pos, _SEQUENCE, "signature algorithm", tbs_end)
    issuer_start, pos = _expect(der, pos, _SEQUENCE, "issuer", tbs_end)
    issuer_cn = _common_name(der, issuer_start, pos)
    validity, pos = _expect(der, pos, _SEQUENCE, "validity", tbs_end)
    not_before, after_start = _time(der, validity, pos)
    not_after, _ = _time(der, after_start, pos)
    subject_start, pos = _expect(der, pos, _SEQUENCE, "subject", tbs_end)
    subject_cn = _common_name(der, subject_start, pos)
    _, pos = _expect(der, pos, _SEQUENCE, "subjectPublicKeyInfo", tbs_end)
    san_value = None
    while pos < tbs_end:  # optional unique IDs ([1], [2]) then extensions ([3])
        tag, start, end = _tlv(der, pos, tbs_end)
        if tag == _EXTENSIONS:
            san_value = _find_extension(der, start, end, _OID_SUBJECT_ALT_NAME)
        pos = end
    names = _general_names(der, *san_value) if san_value else {}
    return Certificate(
        common_name=subject_cn,
        issuer_common_name=issuer_cn,
        not_before=not_before,
        not_after=not_after,
        serial=serial,
        sans_dns=tuple(names.get(_SAN_DNS, ())),
        sans_ip=tuple(names.get(_SAN_IP, ())),
        sans_email=tuple(names.get(_SAN_EMAIL, ())),
        sans_uri=tuple(names.get(_SAN_URI, ())),
        has_san_extension=san_value is not None,
    )


def _tlv(der: bytes, pos: int, limit: int | None = None) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at `pos`."""
    limit = len(der) if limit is None else limit
    if pos + 2 > limit:
        raise DERError(f"truncated element at offset {pos}")
    tag, first = der[pos], der[pos + 1]
    if tag & 0x1F == 0x1F:
        raise DERError(f"unsupported high tag number at offset {pos}")
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise DERError(f"invalid length encoding at offset {pos}")
        if start + count > limit:
            raise DERError(f"truncated length at offset {pos}")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    if end > limit:
        raise DERError(f"element at offset {pos} runs past its container")
    return tag, start, end


def _expect(der: bytes, pos: int, tag: int, what: str, limit: int | None = None) -> tuple[int, int]:
    """Content start and element end of the element at `pos`, which must have `tag`."""
    found, start, end = _tlv(der, pos, limit)
    if found != tag:
        raise DERError(f"expected {what} (tag 0x{tag:02x}) at offset {pos}, got 0x{found:02x}")
    return start, end


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items = []
    pos = start
    while pos < end:
        tag, c_start, c_end = _tlv(der, pos, end)
        items.append((tag, c_start, c_end))
        pos = c_end
    return items


def _common_name(der: bytes, start: int, end: int) -> str | None:
    """The last CN attribute of a Name (the most specific one, as openssl shows it)."""
    found = None
    for tag, rdn_start, rdn_end in _children(der, start, end):
        if tag != _SET:
            raise DERError("Name holds a non-SET element")
        for attr_tag, a_start, a_end in _children(der, rdn_start, rdn_end):
            if attr_tag != _SEQUENCE:
                raise DERError("RelativeDistinguishedName holds a non-SEQUENCE element")
            parts = _children(der, a_start, a_end)
            if len(parts) != 2 or parts[0][0] != _OID:
                raise DERError("malformed AttributeTypeAndValue")
            if der[parts[0][1] : parts[0][2]] == _OID_COMMON_NAME:
                found = _text(der[parts[1][1] : parts[1][2]])
    return found


def _text(value: bytes) -> str:
    # CNs are PrintableString/UTF8String in practice; BMPString is too rare to special-case.
    return value.decode("utf-8", errors="replace")


def _time(der: bytes, pos: int, limit: int) -> tuple[datetime, int]:
    tag, start, end = _tlv(der, pos, limit)
    raw = der[start:end].decode("ascii", errors="replace")
    if tag == _UTC_TIME and re.fullmatch(r"\d{12}Z", raw):
        year = int(raw[:2])
        # RFC 5280 4.1.2.5.1: YY >= 50 is 19YY.
        raw = f"{1900 + year if year >= 50 else 2000 + year}{raw[2:]}"
    elif not (tag == _GENERALIZED_TIME and re.fullmatch(r"\d{14}Z", raw)):
        raise DERError(f"invalid validity time {raw!r} at offset {pos}")
    try:
        moment = datetime.strptime(raw, "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError as err:
        raise DERError(f"invalid validity time {raw!r}") from err
    return moment, end


def _find_extension(der: bytes, start: int, end: int, oid: bytes) -> tuple[int, int] | None:
    """(start, end) of the extnValue contents of extension `oid`, if present."""
    ext_start, ext_end = _expect(der, start, _SEQUENCE, "Extensions", end)
    if ext_end != end:
        raise DERError("trailing bytes after Extensions")
    for tag, e_start, e_end in _children(der, ext_start, ext_end):
        if tag != _SEQUENCE:
            raise DERError("Extensions holds a non-SEQUENCE element")
        parts = _children(der, e_start, e_end)
        if not parts or parts[0][0] != _OID:
            raise DERError("Extension without an OID")
        if der[parts[0][1] : parts[0][2]] != oid:
            continue
        value = parts[-1]
        if value[0] != _OCTET_STRING or (len(parts) == 3 and parts[1][0] != _BOOLEAN):
            raise DERError("malformed subjectAltName extension")
        return value[1], value[2]
    return None


def _general_names(der: bytes, start: int, end: int) -> dict[int, list[str]]:
    seq_start, seq_end = _expect(der, start, _SEQUENCE, "GeneralNames", end)
    if seq_end != end:
        raise DERError("trailing bytes after GeneralNames")
    names: dict[int, list[str]] = {}
    for tag, n_start, n_end in _children(der, seq_start, seq_end):
        value = der[n_start:n_end]
        if tag == _SAN_IP:
            if len(value) not in (4, 16):
                raise DERError(f"IP address SAN of {len(value)} bytes")
            names.setdefault(tag, []).append(str(ipaddress.ip_address(value)))
        elif tag in (_SAN_DNS, _SAN_EMAIL, _SAN_URI):
            names.setdefault(tag, []).append(value.decode("ascii", errors="replace"))
        # Other choices (otherName, directoryName, registeredID) say nothing about addresses.
    return names
