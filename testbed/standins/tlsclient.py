"""An HTTPS client that fails the way Go's net/http + crypto/tls do, with Go's error strings.

Kubernetes components log these strings and kindfix (and its users) grep them, e.g.
``dial tcp 172.18.0.3:6443: connect: connection refused`` or
``tls: failed to verify certificate: x509: certificate is valid for 172.18.0.2, not 172.18.0.3``.
The CA is verified by OpenSSL; the host (IP or DNS SAN) by Go's rules (pki.hostname_error).
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from cryptography import x509

from . import pki


class GoError(Exception):
    """str(e) is the Go error text (without the 'Get "url": ' prefix)."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _reason(e: OSError) -> str:
    """Go's wording of a socket error: "connection reset by peer", "broken pipe", ..."""
    return (e.strerror or str(e) or type(e).__name__).lower()


def _dial_error(hostport: str, e: OSError) -> GoError:
    if isinstance(e, ConnectionRefusedError):
        return GoError(f"dial tcp {hostport}: connect: connection refused")
    if isinstance(e, socket.timeout):
        return GoError(f"dial tcp {hostport}: i/o timeout")
    text = {
        errno.EHOSTUNREACH: "no route to host",
        errno.ENETUNREACH: "network is unreachable",
        errno.EADDRNOTAVAIL: "cannot assign requested address",
    }.get(e.errno or 0, _reason(e))
    return GoError(f"dial tcp {hostport}: connect: {text}")


def get(
    url: str,
    ca_pem: bytes,
    cert_file: str | None = None,
    key_file: str | None = None,
    timeout: float = 2.0,
) -> tuple[int, bytes]:
    """GET url; returns (status, body) or raises GoError."""
    return request("GET", url, ca_pem, cert_file, key_file, timeout=timeout)


def request(
    method: str,
    url: str,
    ca_pem: bytes,
    cert_file: str | None = None,
    key_file: str | None = None,
    body: bytes | None = None,
    timeout: float = 2.0,
) -> tuple[int, bytes]:
    """One request (JSON body, if any); returns (status, body) or raises GoError."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # Go's rules below, for Go's error text
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=ca_pem.decode())
    except (ssl.SSLError, ValueError) as e:
        raise GoError(f"unable to load root certificates: {e}") from None
    if cert_file and key_file:
        ctx.load_cert_chain(cert_file, key_file)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise _dial_error(hostport, e) from None
    conn: socket.socket = sock
    try:
        try:
            tls = ctx.wrap_socket(sock, server_hostname=None if _is_ip(host) else host)
            conn = tls
        except ssl.SSLCertVerificationError:
            raise GoError(
                "tls: failed to verify certificate: x509: certificate signed by unknown authority"
            ) from None
        except ssl.SSLError as e:
            raise GoError(f"remote error: tls: {e.reason or e}".lower()) from None
        except socket.timeout:
            raise GoError("net/http: TLS handshake timeout") from None
        except OSError as e:  # reset or closed mid-handshake (the server was stopped): Go's text
            raise GoError(f"read tcp {hostport}: read: {_reason(e)}") from None
        der = tls.getpeercert(binary_form=True) or b""
        err = pki.hostname_error(x509.load_der_x509_certificate(der), host)
        if err:
            raise GoError(f"tls: failed to verify certificate: {err}")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return _exchange(tls, method, path, hostport, body)
    finally:
        conn.close()


def _exchange(
    tls: ssl.SSLSocket, method: str, path: str, hostport: str, body: bytes | None
) -> tuple[int, bytes]:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: kindbed\r\n"
        "Accept: application/json, */*\r\nConnection: close\r\n"
    )
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    resp = http.client.HTTPResponse(tls)
    try:
        tls.sendall(head.encode() + b"\r\n" + (body or b""))
        resp.begin()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as e:
        if isinstance(e, socket.timeout):
            raise GoError(
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ) from None
        raise GoError(f"read tcp {hostport}: {e}") from None
