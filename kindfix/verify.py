"""Proves the cluster healthy before kindfix says so: asks the live components, bounded in time.

etcd: every member has a leader, peer and client URLs are the current IPs, the revision did not go
back. kube-apiserver /readyz on every control plane. kube-controller-manager and kube-scheduler
answer /healthz `ok` whenever they are not the leader (client-go LeaderElector.Check), so one cut
off from the apiserver looks healthy: their Leases kube-system/<component> must be held by a
control plane and renewed after the repair began to be verified (read through the apiserver with
admin.conf's credentials), and on every control plane the apiserver must answer with the
credentials and server of controller-manager.conf / scheduler.conf (what those components use).
The load balancer answers, and routes to every apiserver when curl can show which one answered
(`%{certs}`, curl >= 7.88); with an older curl the check says so instead of claiming the routes.
Where kubectl exists (kind nodes), `kubectl get nodes` lists every node Ready, with retries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from kindfix import etcd, probes
from kindfix.addresses import node_ips, same_ip
from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.kubeapi import ADMIN_CONF, holder_node, kube_get, lease_path, micro_time, node_server
from kindfix.node import Node
from kindfix.nodescripts import script
from kindfix.x509 import parse_pem_certificates

ELECTED = (("kube-controller-manager", "/etc/kubernetes/controller-manager.conf"),
           ("kube-scheduler", "/etc/kubernetes/scheduler.conf"))
RENEW_SLACK_S = 2.0  # clock granularity between renewTime and the node's `date`

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


def _member_list_and_status(node: Node, wait: float
                             ) -> tuple[list[probes.EtcdMember], dict[str, Any]] | str:
    """The member list and status from a member that just had a leader, retried for up to
    `wait` seconds: right after a repair a member can go away for a moment (a kubelet that
    restarts or replaces its pod), which is "not yet", not a reason to stop verifying with a
    traceback-like error. The last error when it never answered."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return etcd.members(node), etcd.call(node, "/v3/maintenance/status")
        except KindfixError as err:
            if time.monotonic() >= deadline:
                return err.message
        time.sleep(0.5)


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
    listed = _member_list_and_status(leader, wait)
    if isinstance(listed, str):
        checks.append(Check(leader.name, "etcd member list and status read", False, listed))
        return checks
    members, st = listed
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
    revision = int(st.get("header", {}).get("revision", 0))
    checks.append(Check(cluster.control_planes[0].name, "etcd revision kept",
                        revision >= min_revision, f"revision {revision} (before: {min_revision})"))
    return checks


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

    told = [True]  # whether curl showed who answered (curl >= 7.88)
    version = [""]

    def all_routes() -> tuple[bool, str]:
        r = node.exec(["sh", "-c", script("through-lb"), "kindfix-through-lb", str(rounds), url],
                      timeout=15 + 4 * rounds)
        text = r.text()
        if text.startswith("@@kindfix-curl "):
            head, _, text = text.partition("\n")
            version[0] = " ".join(head.split()[1:3])
        answers = text.split("@@kindfix-request")[:rounds]
        good = [a for a in answers if a.strip().startswith("200")]
        seen = {who for a in good if (who := served_by(cluster, a)) is not None}
        detail = f"{len(good)}/{rounds} requests through {lb.name} answered ok"
        told[0] = bool(seen) or not good
        if not seen:
            return len(good) == rounds, detail
        missing = [name for name in wanted if name not in seen]
        if missing:
            detail += f"; no answer from {', '.join(missing)}"
        return len(good) == rounds and not missing, detail

    ok, detail = _retry(all_routes, wait)
    if told[0]:
        return [Check(lb.name, "load balancer routes to every apiserver", ok, detail)]
    # curl < 7.88 (kind images before v0.21) has no %{certs}: the answers alone are proven
    return [Check(lb.name, "load balancer answers (which apiserver answered is unknown: "
                  f"{version[0] or 'curl'} has no %{{certs}}, needs >= 7.88)", ok, detail)]


def _kubectl_check(cluster: Cluster, nodes: Mapping[str, Node], wait: float) -> list[Check]:
    node = nodes[cluster.control_planes[0].name]
    probe = node.exec(["sh", "-c", "command -v kubectl"])
    if not probe.ok:
        return []

    def all_ready() -> tuple[bool, str]:
        r = node.exec(["kubectl", "--kubeconfig", ADMIN_CONF, "get", "nodes",
                       "--no-headers", "--request-timeout=5s"], timeout=30)
        lines = r.text().splitlines()
        # STATUS may carry more than Ready, e.g. "Ready,SchedulingDisabled" for a cordoned node
        not_ready = [ln.split()[0] for ln in lines
                     if len(ln.split()) > 1 and "Ready" not in ln.split()[1].split(",")]
        listed = {ln.split()[0] for ln in lines if ln.split()}
        missing = [n.name for n in cluster.kube_nodes if n.name not in listed]
        ok = r.ok and bool(lines) and not not_ready and not missing
        detail = ", ".join([*(f"{n} not Ready" for n in not_ready),
                            *(f"{n} not listed" for n in missing)])
        return ok, detail or r.stderr.decode(errors="replace").strip()[:120]

    ok, detail = _retry(all_ready, wait)
    return [Check(cluster.control_planes[0].name, "kubectl get nodes: all Ready", ok, detail)]


def _lease_checks(cluster: Cluster, nodes: Mapping[str, Node], wait: float) -> list[Check]:
    """Each elected component's Lease is held by a control plane and renewed after this check
    began (read through the first control plane's apiserver with admin.conf)."""
    first = cluster.control_planes[0]
    node = nodes[first.name]
    server = node_server(first.name)
    cps = {cp.name for cp in cluster.control_planes}
    began: dict[str, float] = {}

    def held(component: str) -> tuple[bool, str]:
        got = kube_get(node, ADMIN_CONF, lease_path(component), server)
        if got.status != "200":
            return False, f"{got.status}: {got.body[:120]}".strip(": ")
        try:
            spec = json.loads(got.body).get("spec") or {}
        except ValueError:
            return False, f"not a Lease: {got.body[:80]}"
        holder = str(spec.get("holderIdentity") or "")
        renewed = micro_time(str(spec.get("renewTime") or ""))
        duration = float(spec.get("leaseDurationSeconds") or 15)
        now = got.now if got.now is not None else time.time()
        began.setdefault(component, now)
        who = holder_node(spec)
        if who not in cps:
            return False, f"held by {holder or 'nobody'!r}, not a control plane of {cluster.name}"
        if renewed is None or now - renewed > duration + RENEW_SLACK_S:
            age = "never" if renewed is None else f"{now - renewed:.0f} s ago"
            return False, f"held by {who}, last renewed {age} (lease {duration:.0f} s)"
        if renewed + RENEW_SLACK_S < began[component]:
            return False, f"held by {who}, not renewed since verification began"
        return True, f"held by {who}, renewed {max(now - renewed, 0):.0f} s ago"

    def check(component: str) -> Check:
        ok, detail = _retry(lambda: held(component), wait)
        return Check(first.name, f"{component} holds and renews its Lease", ok, detail)

    return _each(check, [component for component, _ in ELECTED])


def _kubeconfig_checks(cluster: Cluster, nodes: Mapping[str, Node], wait: float) -> list[Check]:
    """On every control plane, the apiserver answers with each elected component's kubeconfig
    (its server and credentials): /healthz says ok even for one that cannot reach it."""
    def check(item: tuple[str, str, str]) -> Check:
        name, component, kubeconfig = item

        def answers() -> tuple[bool, str]:
            got = kube_get(nodes[name], kubeconfig, "/healthz")
            return got.status == "200", f"{kubeconfig}: {got.status} {got.body[:100]}".strip()

        ok, detail = _retry(answers, wait)
        return Check(name, f"{component} reaches the apiserver", ok, "" if ok else detail)

    return _each(check, [(cp.name, component, kubeconfig) for cp in cluster.control_planes
                         for component, kubeconfig in ELECTED])


def _an_apiserver_answers(cluster: Cluster, nodes: Mapping[str, Node], wait: float
                          ) -> tuple[float, bool]:
    """Until one control plane's apiserver is ready (bounded by `wait`, which ends quietly: the
    checks then say what fails); the seconds it took, and whether all of them were ready at the
    last ask. Every check below needs an apiserver, and while none answers each would ask twice
    a second: right after a repair that was ~18 execs at once, and the Lease release beside
    verify (leases.py) waited behind them on a small machine."""
    start = time.monotonic()
    url = _HEALTH_URLS[0][1]
    cps = [nodes[cp.name] for cp in cluster.control_planes]
    with ThreadPoolExecutor(max_workers=min(12, len(cps))) as pool:
        while True:
            ready = [ok for ok, _ in pool.map(lambda node: _curl_ok(node, url), cps)]
            if any(ready) or time.monotonic() - start >= wait:
                return time.monotonic() - start, bool(ready) and all(ready)
            time.sleep(0.5)


def verify(cluster: Cluster, nodes: Mapping[str, Node], min_revision: int = 0,
           wait: float = 60, all_ready: Callable[[], None] | None = None) -> Verification:
    """Every check, each bounded by `wait`. `all_ready` is called (once, from this thread) as
    soon as every control plane's apiserver is ready, while the other checks still run: the
    caller's moment to act on that (api.py reloads haproxy then); verify itself changes
    nothing."""
    # etcd's checks need no apiserver: they run beside the wait for one
    with ThreadPoolExecutor(max_workers=1) as beside:
        etcd_checks = beside.submit(_etcd_checks, cluster, nodes, min_revision, wait)
        took, every_one = _an_apiserver_answers(cluster, nodes, wait)
        wait = max(wait - took, 1.0)
        if all_ready is not None and every_one:
            all_ready()
            all_ready = None
        checks = _the_rest(cluster, nodes, wait, all_ready)
        return Verification(tuple(etcd_checks.result() + checks))


def _the_rest(cluster: Cluster, nodes: Mapping[str, Node], wait: float,
              all_ready: Callable[[], None] | None) -> list[Check]:
    """Everything but etcd, once an apiserver answers."""
    def component(item: tuple[str, str, str]) -> Check:
        name, what, url = item
        node = nodes[name]
        ok, detail = _retry(lambda: _curl_ok(node, url), wait)
        return Check(name, what, ok, detail)

    items = [(cp.name, what, url) for cp in cluster.control_planes for what, url in _HEALTH_URLS]
    readyz = [item for item in items if item[2] == _HEALTH_URLS[0][1]]
    rest = [item for item in items if item not in readyz]
    # the load balancer, leases, kubeconfigs and kubectl beside the components: each is its own
    # bounded wait
    with ThreadPoolExecutor(max_workers=5) as pool:
        lb = pool.submit(_lb_check, cluster, nodes, wait)
        kubectl = pool.submit(_kubectl_check, cluster, nodes, wait)
        leases = pool.submit(_lease_checks, cluster, nodes, wait)
        kubeconfigs = pool.submit(_kubeconfig_checks, cluster, nodes, wait)
        others = pool.submit(_each, component, rest)
        ready = _each(component, readyz)
        if all_ready is not None and all(c.ok for c in ready):
            all_ready()
        done = dict(zip(readyz + rest, ready + others.result()))
        return [done[item] for item in items] + kubeconfigs.result() + leases.result() + \
            lb.result() + kubectl.result()
