"""An HTTPS health endpoint server, as Kubernetes components serve /healthz, /livez, /readyz.

The handler asks a `checks` callable for [(name, error-or-None)]; the reply copies
k8s.io/apiserver/pkg/server/healthz: 200 "ok" when all pass, else 500 with one
"[+]name ok" / "[-]name failed: reason withheld" line per check and "<endpoint> check failed";
?verbose lists the checks on success too.
"""

from __future__ import annotations

import os
import signal
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import klog

Checks = Callable[[str], "list[tuple[str, str | None]] | None"]
# method, path with query, request body, the client certificate's CN (None: anonymous) ->
# (code, body, content type), or None when the path is not the API's
Api = Callable[[str, str, bytes, "str | None"], "tuple[int, str, str] | None"]


def render(endpoint: str, results: list[tuple[str, str | None]], verbose: bool) -> tuple[int, str]:
    failed = any(err for _, err in results)
    if not failed and not verbose:
        return 200, "ok"
    lines = [f"[+]{n} ok" if not err else f"[-]{n} failed: reason withheld" for n, err in results]
    lines.append(f"{endpoint} check failed" if failed else f"{endpoint} check passed")
    return (500 if failed else 200), "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # a client that never finishes its TLS handshake must not hold a thread

    def _user(self) -> str | None:
        try:
            cert = self.connection.getpeercert()  # type: ignore[attr-defined]
        except (AttributeError, ValueError):
            return None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    def _api(self, method: str) -> bool:
        if self.server.api is None:
            return False
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        answer = self.server.api(method, self.path, body, self._user())
        if answer is None:
            return False
        self._send(*answer)
        return True

    def do_PUT(self) -> None:
        if not self._api("PUT"):
            self._send(*self.server.fallback(urlsplit(self.path).path))

    def do_POST(self) -> None:
        if not self._api("POST"):
            self._send(*self.server.fallback(urlsplit(self.path).path))

    def _send(self, code: int, body: str, ctype: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        endpoint = url.path.strip("/")
        results = self.server.checks(endpoint)
        if results is None:
            if self._api("GET"):
                return
            code, body, ctype = self.server.fallback(url.path)
        else:
            code, body = render(
                endpoint, results, "verbose" in parse_qs(url.query, keep_blank_values=True)
            )
            ctype = "text/plain; charset=utf-8"
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    checks: Checks
    fallback: Callable[[str], tuple[int, str, str]]
    api: Api | None = None

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # failed handshakes (wrong CA, port scans) are the client's problem, as upstream


def not_found(_path: str) -> tuple[int, str, str]:
    return 404, "404 page not found\n", "text/plain; charset=utf-8"


def serve(
    host: str,
    port: int,
    cert_file: str,
    key_file: str,
    checks: Checks,
    *,
    client_ca: str | None = None,
    fallback: Callable[[str], tuple[int, str, str]] = not_found,
    reload_certs: bool = False,
    api: Api | None = None,
    accept: bool = True,
) -> _Server:
    """Serve in a daemon thread; stop with .shutdown() then .server_close().

    reload_certs copies kube-apiserver's DynamicServingCertificateController: a cert/key pair
    rewritten on disk is served to new connections within about a second, without a restart.
    Without accept the port is bound and listening but nothing is accepted until start(srv):
    the kernel completes clients' TCP handshakes, no TLS handshake follows (kube-apiserver
    between creating its listener and serving).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # anonymous health checks are allowed, like upstream
    srv = _Server((host, port), _Handler)
    # Handshake in the request thread, not in accept(): a stalled client must not block others.
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.checks = checks
    srv.fallback = fallback
    srv.api = api
    if accept:
        start(srv)
    if reload_certs:
        threading.Thread(target=_watch_pair, args=(ctx, cert_file, key_file), daemon=True).start()
    return srv


def start(srv: _Server) -> None:
    """Accept and serve, in a daemon thread."""
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def listen(
    host: str, port: int, cert_file: str, key_file: str, checks: Checks, **options: Any
) -> _Server | None:
    """serve(), logged as a component's secure serving logs it (with accept=False: once
    start(srv) is called); None (the caller exits 1) when the port cannot be bound."""
    try:
        srv = serve(host, port, cert_file, key_file, checks, **options)
    except OSError as e:
        klog.log(
            "E",
            "run.go:74",
            f'"command failed" err="failed to create listener: failed to listen on {host}:{port}: {e}"',  # noqa: E501 - upstream's message, kept greppable
        )
        return None
    if options.get("accept", True):
        log_serving(srv)
    return srv


def log_serving(srv: _Server) -> None:
    host, port = srv.server_address[:2]
    klog.info("secure_serving.go:213", f"Serving securely on {host}:{port}")


def stop_on_signals() -> threading.Event:
    """An event SIGTERM (kubelet/crictl stop) and SIGINT set; call from the main thread."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def run_until(stop: threading.Event, srv: _Server) -> None:
    stop.wait()
    srv.shutdown()
    srv.server_close()


def _stamp(*paths: str) -> tuple[tuple[int, int], ...]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            return ()
        out.append((st.st_ino, st.st_mtime_ns))
    return tuple(out)


def _watch_pair(ctx: ssl.SSLContext, cert_file: str, key_file: str) -> None:
    last = _stamp(cert_file, key_file)
    while True:
        time.sleep(1.0)
        now = _stamp(cert_file, key_file)
        if not now or now == last:
            continue
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError):
            continue  # half-written or mismatched pair: keep serving the old one, retry
        last = now
        klog.info(
            "dynamic_serving_content.go:113",
            f'"Loaded a new cert/key pair" name="serving-cert::{cert_file}::{key_file}"',
        )
