"""Stand-in for kube-controller-manager and kube-scheduler v1.29: their API-server connection.

Copies: the --kubeconfig is read ONCE at start (server, certificate-authority[-data],
client-certificate[-data], client-key[-data] of the current context), like client-go does, so a
rewritten kubeconfig needs a restart (crictl stop, or moving the manifest out and back). Every
~2 s (leader election's retry period) it connects to `server`, verifying the CA and that the
serving certificate covers the host it dialled (Go's rules), and GETs /healthz with its client
certificate. Failures are logged as the real ones log them, e.g.
  E1125 18:40:00.000000  1 leaderelection.go:332] error retrieving resource lock
  kube-system/kube-controller-manager: Get "https://172.18.0.3:6443/apis/coordination.k8s.io/v1/
  namespaces/kube-system/leases/kube-controller-manager?timeout=5s": dial tcp 172.18.0.3:6443:
  connect: connection refused
(or "tls: failed to verify certificate: x509: certificate is valid for ..., not ..."). It serves
HTTPS on --bind-address (default 0.0.0.0; kubeadm passes 127.0.0.1) --secure-port (10257 /
10259) with a self-signed certificate made at start; /healthz is 200 "ok" only while the last
check succeeded, else 500 "[-]leaderElection failed".
Limits: no controllers, no scheduling, no real leader election (every instance acts as leader
but never exits on a lost lease); an unreadable kubeconfig exits 1 (crash loop), as upstream.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading

from . import flags as flagparse
from . import health, klog, pki, tlsclient
from .paths import node_path

COMPONENTS = {"kube-controller-manager": 10257, "kube-scheduler": 10259}
RETRY_PERIOD = 2.0


class ApiServerLink:
    def __init__(self, component: str, kc: pki.Kubeconfig, workdir: str) -> None:
        self.component = component
        self.kc = kc
        self.cert_file = os.path.join(workdir, "client.crt")
        self.key_file = os.path.join(workdir, "client.key")
        for path, data in ((self.cert_file, kc.cert_pem), (self.key_file, kc.key_pem)):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
                fh.write(data)
        self.error: str | None = "not checked yet"

    @property
    def lease_url(self) -> str:
        return (
            f"{self.kc.server.rstrip('/')}/apis/coordination.k8s.io/v1/namespaces/kube-system/"
            f"leases/{self.component}?timeout=5s"
        )

    def check_once(self) -> None:
        try:
            has_cert = bool(self.kc.cert_pem and self.kc.key_pem)
            status, _body = tlsclient.get(
                self.kc.server.rstrip("/") + "/healthz",
                self.kc.ca_pem,
                self.cert_file if has_cert else None,
                self.key_file if has_cert else None,
                timeout=5.0,
            )
            err = (
                None
                if status == 200
                else (
                    f"the server is currently unable to handle the request (get leases.coordination.k8s.io "  # noqa: E501 - upstream's message, kept greppable
                    f"{self.component})"
                )
            )
        except tlsclient.GoError as e:
            err = f'Get "{self.lease_url}": {e}'
        if err:
            klog.error(
                "leaderelection.go:332",
                f"error retrieving resource lock kube-system/{self.component}: {err}",
            )
        elif self.error is not None:
            klog.info(
                "leaderelection.go:260", f"successfully acquired lease kube-system/{self.component}"
            )
        self.error = err

    def loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.check_once()
            stop.wait(RETRY_PERIOD)


def main(component: str, argv: list[str]) -> int:
    f = flagparse.parse(argv)
    kubeconfig = f.get("kubeconfig", "")
    try:
        text = node_path(kubeconfig).read_text() if kubeconfig else ""
        kc = pki.parse_kubeconfig(text, node_path("/"))
        if not kc.server or not kc.ca_pem:
            raise ValueError("invalid configuration: no server found for cluster")
    except (OSError, ValueError) as e:
        klog.log("E", "run.go:74", f'"command failed" err="{e}"')
        return 1
    bind = f.get("bind-address", "0.0.0.0")
    port = int(f.get("secure-port", str(COMPONENTS.get(component, 10257))))
    stop = health.stop_on_signals()
    klog.info("serving.go:380", "Generated self-signed cert in-memory")
    with tempfile.TemporaryDirectory(prefix=f"kindbed-{component}-") as work:
        self_signed = pki.make_self_signed(
            "localhost@kindbed", dns_names=["localhost"], ips=["127.0.0.1"]
        )
        pki.write_pair(work, "serving", self_signed)
        link = ApiServerLink(component, kc, work)
        checks = lambda ep: [("leaderElection", link.error)] if ep == "healthz" else None  # noqa: E731
        srv = health.listen(bind, port, f"{work}/serving.crt", f"{work}/serving.key", checks)
        if srv is None:
            return 1
        klog.info(
            "leaderelection.go:250",
            f"attempting to acquire leader lease kube-system/{component}...",
        )
        threading.Thread(target=link.loop, args=(stop,), daemon=True).start()
        health.run_until(stop, srv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))  # python -m ...controlplane <component> [flags]
