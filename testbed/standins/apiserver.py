"""Stand-in for kube-apiserver v1.29: its TLS endpoint, etcd-backed health and the Lease API.

Start-up copies the real one's order: it binds its port (connections are taken by the kernel,
none is answered: a client's TLS handshake times out), then dials the first of --etcd-servers
(TLS with the etcd client certificate) for up to 20 s (apiserver
storagebackend/factory/etcd3.go dialTimeout; the etcd client blocks until connected), then
serves (pkg/controlplane/apiserver/config.go BuildGenericConfig: SecureServing.ApplyTo before
the storage factory); etcd
without quorum accepts TCP but never completes TLS, so an apiserver started while etcd has no
quorum logs `"command failed" err="error creating storage factory: context deadline exceeded"`
and exits 1: the kubelet restarts it under CrashLoopBackOff. A running one whose etcd goes away
keeps serving with /livez failing, until the kubelet's livenessProbe (8 x 10 s) kills it.
Leases: see leases.py (kept in etcd, so they survive an apiserver restart and move with a
snapshot restore).

Copies: serves HTTPS with --tls-cert-file/--tls-private-key-file (kubeadm: pki/apiserver.crt)
on --bind-address (default 0.0.0.0, i.e. the advertise address and 127.0.0.1) port
--secure-port (6443), reloading a rewritten cert/key pair within ~1 s as the real one does
(dynamic serving certificates: no restart needed after kubeadm regenerates apiserver.crt);
client certs signed by --client-ca-file are accepted, anonymous requests too. /healthz,
/livez, /readyz answer 200 "ok" only while etcd is reachable: every ~1 s it does a
real mTLS GET /health against the first of --etcd-servers with --etcd-cafile/--etcd-certfile/
--etcd-keyfile and requires {"health":"true"} (etcd answers false without a leader: a cluster
that lost quorum makes the apiserver unhealthy, as the real etcd check does); else 500 with
"[-]etcd failed: reason withheld" (readyz: etcd-readiness). On failure it logs grpc-style lines
like the real one ("grpc: addrConn.createTransport failed to connect to {Addr: ...}. Err:
connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:2379: connect:
connection refused\""). /version returns the version; other /api* and /apis* answer 403.
Limits: no API but Leases, no watch; the etcd client files are re-read at each check (the real
one loads them once).
KINDBED_APISERVER_STORAGE_TIMEOUT shortens the 20 s start-up dial, for host tests only.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from . import flags as flagparse
from . import health, klog, leases, release, tlsclient
from .paths import node_path

CHECK_PERIOD = 1.0
# k8s.io/apiserver/pkg/storage/storagebackend/factory/etcd3.go dialTimeout
STORAGE_DIAL_TIMEOUT = float(os.environ.get("KINDBED_APISERVER_STORAGE_TIMEOUT") or 20.0)
VERSION = release.INFO
OTHER_CHECKS = [
    "ping",
    "log",
    "poststarthook/start-kube-apiserver-admission-initializer",
    "poststarthook/generic-apiserver-start-informers",
    "poststarthook/bootstrap-controller",
]


class EtcdProbe:
    """The last result of the etcd health check, refreshed by a background thread."""

    def __init__(self, url: str, ca: str, cert: str, key: str) -> None:
        self.url, self.ca, self.cert, self.key = url, ca, cert, key
        self.error: str | None = "not checked yet"
        self._logged_at = 0.0

    def check_once(self) -> None:
        host = self.url.split("://", 1)[-1].rstrip("/")
        try:
            ca_pem = node_path(self.ca).read_bytes()
            status, body = tlsclient.get(
                self.url.rstrip("/") + "/health",
                ca_pem,
                str(node_path(self.cert)),
                str(node_path(self.key)),
                timeout=2.0,
            )
            healthy = status == 200 and json.loads(body or b"{}").get("health") == "true"
            err = (
                None
                if healthy
                else f"etcd /health returned {status}: {body.decode(errors='replace').strip()}"
            )
        except tlsclient.GoError as e:
            desc = str(e)
            if desc.startswith("dial tcp"):
                err = f'connection error: desc = "transport: Error while dialing: {desc}"'
                self._log_transport(host, err)
            elif desc.startswith(("tls:", "remote error")):
                err = (
                    f'connection error: desc = "transport: authentication handshake failed: {desc}"'
                )
                self._log_transport(host, err)
            else:  # connected, but no answer in time: etcd without quorum
                err = "error getting data from etcd: context deadline exceeded"
        except (OSError, ValueError) as e:
            err = str(e)
        if err and not err.startswith("connection error"):
            self._log(f'"etcd" check failed: {err}')
        if err is None and self.error is not None:
            klog.info("healthz.go:261", f"etcd check passed, endpoint {host}")
        self.error = err

    def _log_transport(self, host: str, err: str) -> None:
        self._log(
            f"[core] [Channel #1 SubChannel #2] grpc: addrConn.createTransport failed to connect to "  # noqa: E501 - upstream's message, kept greppable
            f'{{Addr: "{host}", ServerName: "{host.rsplit(":", 1)[0]}", }}. Err: {err}',
            "W",
            "logging.go:59",
        )

    def _log(self, msg: str, sev: str = "E", src: str = "healthz.go:261") -> None:
        now = time.monotonic()
        if now - self._logged_at >= 5.0:  # grpc backs off; keep the log readable
            self._logged_at = now
            klog.log(sev, src, msg)

    def loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.check_once()
            stop.wait(CHECK_PERIOD)

    def connected(self) -> bool:
        """The etcd client's dial: TCP and a TLS handshake (any HTTP answer will do)."""
        try:
            tlsclient.get(
                self.url.rstrip("/") + "/health",
                node_path(self.ca).read_bytes(),
                str(node_path(self.cert)),
                str(node_path(self.key)),
                timeout=2.0,
            )
        except (tlsclient.GoError, OSError):
            return False
        return True


def wait_for_storage(probe: EtcdProbe, stop: threading.Event, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        if probe.connected():
            return True
        if time.monotonic() >= deadline:
            return False
        stop.wait(0.5)
    return False


def checks_for(probe: EtcdProbe):  # type: ignore[no-untyped-def]
    def checks(endpoint: str) -> list[tuple[str, str | None]] | None:
        if endpoint not in ("healthz", "livez", "readyz"):
            return None
        etcd = "etcd-readiness" if endpoint == "readyz" else "etcd"
        return [
            (OTHER_CHECKS[0], None),
            (OTHER_CHECKS[1], None),
            (etcd, probe.error),
            *((c, None) for c in OTHER_CHECKS[2:]),
        ]

    return checks


def fallback(path: str) -> tuple[int, str, str]:
    if path == "/version":
        return 200, json.dumps(VERSION, indent=2), "application/json"
    if path.startswith(("/api", "/apis")):
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f'forbidden: User "system:anonymous" cannot get path "{path}"',
            "reason": "Forbidden",
            "details": {},
            "code": 403,
        }
        return 403, json.dumps(status), "application/json"
    return 404, "404 page not found\n", "text/plain; charset=utf-8"


def main(argv: list[str]) -> int:
    f = flagparse.parse(argv)
    pki = "/etc/kubernetes/pki"
    bind = f.get("bind-address", "0.0.0.0")
    port = int(f.get("secure-port", "6443"))
    etcd_url = f.get("etcd-servers", "https://127.0.0.1:2379").split(",")[0]
    probe = EtcdProbe(
        etcd_url,
        f.get("etcd-cafile", f"{pki}/etcd/ca.crt"),
        f.get("etcd-certfile", f"{pki}/apiserver-etcd-client.crt"),
        f.get("etcd-keyfile", f"{pki}/apiserver-etcd-client.key"),
    )
    stop = health.stop_on_signals()
    klog.info(
        "options.go:222", f"external host was not specified, using {f.get('advertise-address', '')}"
    )
    klog.info("server.go:148", f"Version: {VERSION['gitVersion']} (kindbed stand-in)")
    kv = leases.EtcdKV(etcd_url, probe.ca, probe.cert, probe.key)
    client_ca = f.get("client-ca-file")
    # the listener first, accepting nothing until storage is set up (BuildGenericConfig:
    # SecureServing.ApplyTo creates it before the storage factory dials etcd)
    srv = health.listen(
        bind,
        port,
        str(node_path(f.get("tls-cert-file", f"{pki}/apiserver.crt"))),
        str(node_path(f.get("tls-private-key-file", f"{pki}/apiserver.key"))),
        checks_for(probe),
        client_ca=str(node_path(client_ca)) if client_ca else None,
        fallback=fallback,
        reload_certs=True,
        api=lambda method, path, body, user: leases.handle(kv, method, path, body, user),
        accept=False,
    )
    if srv is None:
        return 1
    if not wait_for_storage(probe, stop, STORAGE_DIAL_TIMEOUT):
        srv.server_close()
        if stop.is_set():
            return 0
        klog.log(
            "E",
            "run.go:74",
            '"command failed" err="error creating storage factory: context deadline exceeded"',
        )
        return 1
    health.start(srv)
    health.log_serving(srv)
    threading.Thread(target=probe.loop, args=(stop,), daemon=True).start()
    health.run_until(stop, srv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
