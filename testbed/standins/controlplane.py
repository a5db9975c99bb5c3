"""Stand-in for kube-controller-manager and kube-scheduler v1.29: leader election, nothing else.

Copies: the --kubeconfig is read ONCE at start (server, certificate-authority[-data],
client-certificate[-data], client-key[-data] of the current context), like client-go does, so a
rewritten kubeconfig needs a restart (crictl stop, or moving the manifest out and back).
Leader election as client-go tools/leaderelection with the components' defaults (lease 15 s,
renew deadline 10 s, retry 2 s) on the Lease kube-system/<component> through the apiserver
(identity `<hostname>_<uuid>`): GET the lease; absent -> create it; held by another whose record
changed within the lease duration (observed locally) -> wait; else take or renew it (PUT with the
resourceVersion read). A candidate tries again 2 s to 4.4 s after its last try ended (acquire:
wait.JitterUntil(retry, JitterFactor 1.2, sliding)); a leader renews every 2 s (renew:
wait.Until). A leader that cannot renew for 10 s logs `failed to renew
lease ...: timed out waiting for the condition` and `"leaderelection lost"` and exits 1, as the
real ones do (so the kubelet restarts it). TLS as Go: the CA and the dialled host are verified.
Failures are logged as upstream, e.g.
  E1125 18:40:00.000000  1 leaderelection.go:332] error retrieving resource lock
  kube-system/kube-controller-manager: Get "https://172.18.0.3:6443/apis/coordination.k8s.io/v1/
  namespaces/kube-system/leases/kube-controller-manager?timeout=5s": dial tcp 172.18.0.3:6443:
  connect: connection refused
(or "tls: failed to verify certificate: x509: certificate is valid for ..., not ...").
Health on --bind-address (default 0.0.0.0; kubeadm passes 127.0.0.1) --secure-port (10257 /
10259), HTTPS with a self-signed certificate made at start: /healthz is client-go's
LeaderElector.Check through NewLeaderHealthzAdaptor(20 s): `ok` whenever this instance is NOT the
leader (so one cut off from the apiserver looks healthy), 500 `[-]leaderElection failed` only for
a leader whose lease it has not renewed for lease duration + 20 s.
Limits: no controllers, no scheduling; an unreadable kubeconfig exits 1 (crash loop), as upstream.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from . import flags as flagparse
from . import health, klog, pki, tlsclient
from .paths import node_path

COMPONENTS = {"kube-controller-manager": 10257, "kube-scheduler": 10259}
# client-go leaderelection defaults as kube-controller-manager and kube-scheduler set them
LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
JITTER_FACTOR = 1.2  # leaderelection.go JitterFactor, applied to the acquire loop only
HEALTHZ_TOLERANCE = 20.0  # NewLeaderHealthzAdaptor(time.Second * 20)
GROUP_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"


def micro_time(t: float) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, component: str, kc: pki.Kubeconfig, workdir: str,
                 identity: str | None = None) -> None:
        self.component = component
        self.kc = kc
        self.identity = identity or f"{_hostname()}_{uuid.uuid4()}"
        self.cert_file = os.path.join(workdir, "client.crt")
        self.key_file = os.path.join(workdir, "client.key")
        for path, data in ((self.cert_file, kc.cert_pem), (self.key_file, kc.key_pem)):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
                fh.write(data)
        self.observed: dict[str, Any] = {}
        self.observed_time = 0.0  # monotonic, when the record last changed (client-go)
        self.error: str | None = "not checked yet"  # the last attempt's error
        self.lost = False

    @property
    def lease_url(self) -> str:
        return f"{self.kc.server.rstrip('/')}{GROUP_PATH}/{self.component}?timeout=5s"

    def is_leader(self) -> bool:
        return self.observed.get("holderIdentity") == self.identity

    def check(self) -> str | None:
        """client-go LeaderElector.Check(maxTolerableExpiredLease)."""
        if not self.is_leader():
            return None
        if time.monotonic() - self.observed_time > LEASE_DURATION + HEALTHZ_TOLERANCE:
            return f"failed election to renew leadership on lease {self.component}"
        return None

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None
                 ) -> tuple[int, dict[str, Any]]:
        has_cert = bool(self.kc.cert_pem and self.kc.key_pem)
        code, raw = tlsclient.request(
            method, url, self.kc.ca_pem,
            self.cert_file if has_cert else None, self.key_file if has_cert else None,
            body=json.dumps(body).encode() if body is not None else None, timeout=5.0,
        )
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {}
        return code, data if isinstance(data, dict) else {}

    def _fail(self, what: str, err: str) -> bool:
        self.error = err
        klog.error("leaderelection.go:332", f"{what}: {err}")
        return False

    def try_acquire_or_renew(self) -> bool:
        now = time.time()
        lock = f"error retrieving resource lock kube-system/{self.component}"
        try:
            code, lease = self._request("GET", self.lease_url)
        except tlsclient.GoError as e:
            return self._fail(lock, f'Get "{self.lease_url}": {e}')
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(LEASE_DURATION),
                "acquireTime": micro_time(now), "renewTime": micro_time(now),
                "leaseTransitions": 0}
        if code == 404:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.component, "namespace": "kube-system"},
                    "spec": spec}
            return self._write("POST", self.lease_url.replace(f"/{self.component}?", "?"), body)
        if code != 200:
            return self._fail(lock, "the server is currently unable to handle the request (get "
                              f"leases.coordination.k8s.io {self.component})"
                              if code >= 500 else str(lease.get("message", code)))
        old = lease.get("spec") or {}
        if old != self.observed:
            self.observed, self.observed_time = dict(old), time.monotonic()
        holder = old.get("holderIdentity")
        duration = float(old.get("leaseDurationSeconds") or LEASE_DURATION)
        if holder and holder != self.identity and \
                self.observed_time + duration > time.monotonic():
            self.error = None  # held by another, and renewed: nothing wrong with us
            return False
        if holder == self.identity:
            spec["acquireTime"] = old.get("acquireTime", spec["acquireTime"])
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
        else:
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + (1 if holder else 0)
        lease["spec"] = spec
        return self._write("PUT", self.lease_url, lease)

    def _write(self, method: str, url: str, body: dict[str, Any]) -> bool:
        what = ("error initially creating leader election record" if method == "POST"
                else "Failed to update lock")
        try:
            code, answer = self._request(method, url, body)
        except tlsclient.GoError as e:
            verb = "Post" if method == "POST" else "Put"
            return self._fail(what, f'{verb} "{url}": {e}')
        if code not in (200, 201):
            return self._fail(what, str(answer.get("message") or f"status {code}"))
        self.observed, self.observed_time = dict(body["spec"]), time.monotonic()
        self.error = None
        return True

    def run(self, stop: threading.Event) -> None:
        name = f"kube-system/{self.component}"
        klog.info("leaderelection.go:250", f"attempting to acquire leader lease {name}...")
        while not stop.is_set() and not self.try_acquire_or_renew():
            stop.wait(acquire_retry())
        if stop.is_set():
            return
        klog.info("leaderelection.go:260", f"successfully acquired lease {name}")
        last = time.monotonic()
        while not stop.wait(RETRY_PERIOD):
            if self.try_acquire_or_renew():
                last = time.monotonic()
                continue
            if not self.is_leader() or time.monotonic() - last > RENEW_DEADLINE:
                klog.error("leaderelection.go:285",
                           f"failed to renew lease {name}: timed out waiting for the condition")
                klog.error("server.go:302", '"leaderelection lost"')
                self.lost = True
                stop.set()
                return


def acquire_retry(rand: Callable[[], float] = random.random) -> float:
    """Seconds before a candidate tries again: wait.Jitter(RetryPeriod, 1.2), i.e. RetryPeriod
    + rand() * 1.2 * RetryPeriod (apimachinery wait.go Jitter), 2 s to 4.4 s."""
    return RETRY_PERIOD + rand() * JITTER_FACTOR * RETRY_PERIOD


def _hostname() -> str:
    return os.environ.get("HOSTNAME") or socket.gethostname()


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
        elector = LeaderElector(component, kc, work)
        checks = lambda ep: [("leaderElection", elector.check())] if ep == "healthz" else None  # noqa: E731
        srv = health.listen(bind, port, f"{work}/serving.crt", f"{work}/serving.key", checks)
        if srv is None:
            return 1
        threading.Thread(target=elector.run, args=(stop,), daemon=True).start()
        health.run_until(stop, srv)
    return 1 if elector.lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))  # python -m ...controlplane <component> [flags]
