"""Proves the cluster healthy before kindfix says so: asks the live components, bounded in time.

etcd: every member has a leader, peer and client URLs are the current IPs, the revision did not go
back. kube-apiserver /readyz, kube-controller-manager and kube-scheduler /healthz on every control
plane; the load balancer routes to every apiserver. On a real kind node also `kubectl get nodes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from kindfix import etcd
from kindfix.addresses import node_ips, same_ip
from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.node import Node
from kindfix.x509 import parse_pem_certificates

T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    node: str
    what: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Verification:
    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.node}: {c.what}: {c.detail}" for c in self.checks if not c.ok]


_HEALTH_URLS = (
    ("kube-apiserver /readyz", "https://{host}:6443/readyz"),
    ("kube-controller-manager /healthz", "https://{host}:10257/healthz"),
    ("kube-scheduler /healthz", "https://{host}:10259/healthz"),
)


def _curl_ok(node: Node, url: str) -> tuple[bool, str]:
    """GET url ({host}: loopback; IPv6 control planes listen on [::1] only) and expect `ok`."""
    for host in etcd.LOOPBACKS:
        r = node.exec(["curl", "-sk", "--max-time", "3", url.format(host=host)], timeout=15)
        if r.exit_code != etcd.CURL_COULD_NOT_CONNECT:
            break
    body = r.text().strip()
    return r.ok and body == "ok", body[:120] or r.stderr.decode(errors="replace").strip()[:120]


def _retry(check: Callable[[], tuple[bool, str]], seconds: float) -> tuple[bool, str]:
    deadline = time.monotonic() + seconds
    ok, detail = check()
    while not ok and time.monotonic() < deadline:
        time.sleep(0.5)
        ok, detail = check()
    return ok, detail


def _each(check: Callable[[T], Check], items: Sequence[T]) -> list[Check]:
    """Run independent checks at once (each is a few execs and maybe a bounded wait)."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(12, len(items))) as pool:
        return list(pool.map(check, items))


def _etcd_checks(cluster: Cluster, nodes: Mapping[str, Node], min_revision: int, wait: float
                 ) -> list[Check]:
    def has_leader(name: str) -> Check:
        node = nodes[name]
        ok, _ = _retry(lambda: (etcd.healthy(node), ""), wait)
        return Check(name, "etcd member has a leader", ok,
                     "" if ok else "no leader / client port not answering")

    checks = _each(has_leader, [cp.name for cp in cluster.control_planes])
    leader = next((nodes[c.node] for c in checks if c.ok), None)
    if leader is None:
        return checks
    members = etcd.members(leader)
    for m in members:
        member_node = cluster.node(m.name)
        want = member_node.ips() if member_node else ()
        urls_ok = bool(member_node) and all(any(same_ip(lit.text, ip) for ip in want)
                                     for url in (*m.peer_urls, *m.client_urls)
                                     for lit in node_ips(url))
        checks.append(Check(m.name or "?", "etcd member peer/client URLs current", urls_ok,
                            f"peer {','.join(m.peer_urls)} client {','.join(m.client_urls)}"))
    missing = {cp.name for cp in cluster.control_planes} - {m.name for m in members}
    checks += [Check(name, "etcd member present", False, "not in the member list")
               for name in sorted(missing)]
    st = etcd.status(leader) or {}
    revision = int(st.get("header", {}).get("revision", 0))
    checks.append(Check(cluster.control_planes[0].name, "etcd revision kept",
                        revision >= min_revision, f"revision {revision} (before: {min_revision})"))
    return checks


# N requests through the load balancer in one exec, each printing its HTTP code and the chain the
# server presented (curl >= 7.88 `%{certs}`; older curl prints nothing for it), then a separator
_THROUGH_LB = r"""
i=0
while [ "$i" -lt "$1" ]; do
  curl -sk --max-time 3 -o /dev/null -w '%{http_code}\n%{certs}\n' "$2" 2>/dev/null
  echo @@kindfix-request
  i=$((i+1))
done
"""


def served_by(cluster: Cluster, pem: str) -> str | None:
    """The control plane whose apiserver presented this chain: its leaf names the node (kubeadm
    puts the node name and its IP in the apiserver certificate)."""
    try:
        certs = parse_pem_certificates(pem)
    except KindfixError:
        return None
    if not certs:
        return None
    leaf = certs[0]
    for cp in cluster.control_planes:
        if cp.name in leaf.sans_dns:
            return cp.name
    return next((cp.name for cp in cluster.control_planes
                 if any(leaf.covers_ip(ip) for ip in cp.ips())), None)


def _lb_check(cluster: Cluster, nodes: Mapping[str, Node], wait: float) -> list[Check]:
    """Requests through the load balancer answer, and (when curl shows the serving certificate)
    every control plane's apiserver answers some: a backend haproxy still marks DOWN is missed."""
    lb = cluster.load_balancer
    if lb is None or not cluster.control_planes:
        return []
    node = nodes[cluster.control_planes[0].name]
    url = f"https://{lb.name}:6443/readyz"
    rounds = 2 * len(cluster.control_planes)
    wanted = [cp.name for cp in cluster.control_planes]

    def all_routes() -> tuple[bool, str]:
        r = node.exec(["sh", "-c", _THROUGH_LB, "kindfix-through-lb", str(rounds), url],
                      timeout=15 + 4 * rounds)
        answers = r.text().split("@@kindfix-request")[:rounds]
        good = [a for a in answers if a.strip().startswith("200")]
        seen = {who for a in good if (who := served_by(cluster, a)) is not None}
        detail = f"{len(good)}/{rounds} requests through {lb.name} answered ok"
        if not seen:  # curl < 7.88: which apiserver answered cannot be told
            return len(good) == rounds, detail
        missing = [name for name in wanted if name not in seen]
        if missing:
            detail += f"; no answer from {', '.join(missing)}"
        return len(good) == rounds and not missing, detail

    ok, detail = _retry(all_routes, wait)
    return [Check(lb.name, "load balancer routes to every apiserver", ok, detail)]


def _kubectl_check(cluster: Cluster, nodes: Mapping[str, Node]) -> list[Check]:
    node = nodes[cluster.control_planes[0].name]
    probe = node.exec(["sh", "-c", "command -v kubectl"])
    if not probe.ok:
        return []
    r = node.exec(["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "nodes",
                   "--no-headers"], timeout=30)
    lines = r.text().splitlines()
    # STATUS may carry more than Ready, e.g. "Ready,SchedulingDisabled" for a cordoned node
    not_ready = [ln.split()[0] for ln in lines
                 if len(ln.split()) > 1 and "Ready" not in ln.split()[1].split(",")]
    ok = r.ok and bool(lines) and not not_ready
    return [Check(cluster.control_planes[0].name, "kubectl get nodes: all Ready", ok,
                  ", ".join(not_ready) or r.stderr.decode(errors="replace").strip()[:120])]


def verify(cluster: Cluster, nodes: Mapping[str, Node], min_revision: int = 0,
           wait: float = 60) -> Verification:
    checks = _etcd_checks(cluster, nodes, min_revision, wait)

    def component(item: tuple[str, str, str]) -> Check:
        name, what, url = item
        node = nodes[name]
        ok, detail = _retry(lambda: _curl_ok(node, url), wait)
        return Check(name, what, ok, detail)

    # the load balancer and kubectl beside the components: each is its own bounded wait
    with ThreadPoolExecutor(max_workers=2) as pool:
        lb = pool.submit(_lb_check, cluster, nodes, wait)
        kubectl = pool.submit(_kubectl_check, cluster, nodes)
        checks += _each(component, [(cp.name, what, url) for cp in cluster.control_planes
                                    for what, url in _HEALTH_URLS])
        checks += lb.result() + kubectl.result()
    return Verification(tuple(checks))
