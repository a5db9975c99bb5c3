"""Proving a cluster healthy by asking its live components (kindfix/verify.py)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from kindfix import kubeapi, probes
from kindfix import verify as verify_module
from kindfix.discovery import Cluster
from kindfix.runtime import ExecResult
from kindfix.verify import verify
from tests.fakes import FakeNode, ok
from tests.unit.helpers_etcd import FakeEtcd
from tests.unit.helpers_nodes import dump

CP, CP2, CP3 = "kind-control-plane", "kind-control-plane2", "kind-control-plane3"
LB = "kind-external-load-balancer"


def micro(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


@dataclass
class FakeApi:
    """What kube-api.sh gets from the apiservers: the two Leases (renewed at every read,
    as a live leader renews every 2 s, unless `frozen`), and per (node, kubeconfig) an error
    instead of /healthz ok (a stale server or certificate in that kubeconfig)."""

    holders: dict[str, str] = field(default_factory=lambda: {
        "kube-controller-manager": f"{CP}_0a1b", "kube-scheduler": f"{CP2}_2c3d"})
    frozen: dict[str, float] = field(default_factory=dict)  # component -> fixed renewTime
    broken: dict[tuple[str, str], str] = field(default_factory=dict)
    apiserver_down: bool = False
    now: float = 1_700_000_000.0

    def attach(self, *nodes: FakeNode) -> None:
        for node in nodes:
            node.on_script("kube-api", self.handle)

    def handle(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        kubeconfig, _server, path = argv[4], argv[5], argv[6]
        self.now += 1.0
        if self.apiserver_down:
            status, body = "error curl: (7) Failed to connect to port 6443", ""
        elif (node.name, kubeconfig) in self.broken:
            status, body = f"error {self.broken[(node.name, kubeconfig)]}", ""
        elif path == "/healthz":
            status, body = "200", "ok"
        else:
            component = path.rsplit("/", 1)[-1]
            if component not in self.holders:
                status, body = "404", '{"kind":"Status","reason":"NotFound"}'
            else:
                renewed = self.frozen.get(component, self.now - 0.5)
                status, body = "200", json.dumps({"kind": "Lease", "spec": {
                    "holderIdentity": self.holders[component], "leaseDurationSeconds": 15,
                    "renewTime": micro(renewed)}})
        return ok(f"@@status {status}\n{body}\n@@now {int(self.now)}\n")


def etcd_as_recorded(name: str, **etcd: Any) -> tuple[Cluster, dict[str, FakeNode], FakeEtcd]:
    """A fixture dump whose control planes' etcd answers what the dump's probe recorded."""
    cluster, snaps, nodes = dump(name)
    out = snaps[CP].output(probes.ETCD_PROBE)
    assert out is not None
    probe = probes.parse_etcd_probe(out.text())
    members: list[dict[str, Any]] = [
        {
            "ID": m.id,
            "name": m.name,
            "peerURLs": list(m.peer_urls),
            "clientURLs": list(m.client_urls),
        }
        for m in probe.members
    ]
    gw = FakeEtcd(members, leader=probe.leader, revision=probe.revision or 0, **etcd)
    gw.attach(*(nodes[c.name] for c in cluster.control_planes))
    api = FakeApi() if cluster.node(CP2) else FakeApi(holders=dict.fromkeys(
        ("kube-controller-manager", "kube-scheduler"), f"{cluster.control_planes[0].name}_0a1b"))
    api.attach(*(nodes[c.name] for c in cluster.control_planes))
    nodes[cluster.control_planes[0].name].api = api  # type: ignore[attr-defined]
    return cluster, nodes, gw


def api_of(nodes: dict[str, FakeNode]) -> FakeApi:
    api = nodes[CP].api  # type: ignore[attr-defined]
    assert isinstance(api, FakeApi)
    return api


def healthy_ha() -> tuple[Cluster, dict[str, FakeNode], FakeEtcd]:
    """ha-3cp-healthy with etcd answering what the fixture's probe recorded."""
    cluster, nodes, gw = etcd_as_recorded("ha-3cp-healthy")
    assert len(gw.members) == 3
    assert gw.leader
    assert gw.revision
    return cluster, nodes, gw


def failures(cluster: Cluster, nodes: dict[str, FakeNode], min_revision: int = 0) -> list[str]:
    v = verify(cluster, nodes, min_revision=min_revision, wait=0)
    assert v.healthy == (not v.failures())
    return v.failures()


def test_a_healthy_cluster_verifies_healthy() -> None:
    cluster, nodes, gw = healthy_ha()
    v = verify(cluster, nodes, min_revision=gw.revision, wait=0)
    assert v.healthy, v.failures()
    whats = {(c.node, c.what) for c in v.checks}
    for cp in (CP, CP2, CP3):
        assert (cp, "etcd member has a leader") in whats
        assert (cp, "etcd member peer/client URLs current") in whats
        assert (cp, "kube-apiserver /readyz") in whats
        assert (cp, "kube-scheduler /healthz") in whats
    assert (LB, "load balancer routes to every apiserver") in whats


def test_a_stale_member_peer_url_is_named() -> None:
    cluster, nodes, gw = healthy_ha()
    stale = next(m for m in gw.members if m["name"] == CP2)
    stale["peerURLs"] = ["https://172.18.0.5:2380"]  # control-plane3's address
    [line] = failures(cluster, nodes)
    assert line.startswith(f"{CP2}: etcd member peer/client URLs current: ")
    assert "https://172.18.0.5:2380" in line


def test_a_stale_client_url_is_named_too() -> None:
    cluster, nodes, gw = healthy_ha()
    next(m for m in gw.members if m["name"] == CP3)["clientURLs"] = ["https://172.18.0.9:2379"]
    [line] = failures(cluster, nodes)
    assert line.startswith(f"{CP3}: etcd member peer/client URLs current")


def test_a_missing_member_is_named() -> None:
    cluster, nodes, gw = healthy_ha()
    gw.members = [m for m in gw.members if m["name"] != CP3]
    assert failures(cluster, nodes) == [f"{CP3}: etcd member present: not in the member list"]


def test_a_lowered_revision_is_a_failure() -> None:
    cluster, nodes, gw = healthy_ha()
    before = gw.revision
    gw.revision = before - 10  # e.g. a snapshot restore that lost writes
    [line] = failures(cluster, nodes, min_revision=before)
    assert line == f"{CP}: etcd revision kept: revision {before - 10} (before: {before})"


def test_an_apiserver_that_is_not_ready_is_named() -> None:
    cluster, nodes, gw = healthy_ha()
    gw.unhealthy[(CP2, 6443)] = "[-]etcd failed: reason withheld\nreadyz check failed"
    lines = failures(cluster, nodes)
    assert (
        f"{CP2}: kube-apiserver /readyz: [-]etcd failed: reason withheld\nreadyz check "
        "failed" in lines
    )
    # the load balancer sends some requests to that apiserver as well
    assert all(line.startswith((f"{CP2}:", f"{LB}:")) for line in lines)


def test_a_load_balancer_that_does_not_route_is_named() -> None:
    cluster, nodes, gw = healthy_ha()
    gw.unhealthy[(LB, 6443)] = ""
    [line] = failures(cluster, nodes)
    assert line.startswith(f"{LB}: load balancer routes to every apiserver: 0/6 requests")


def test_a_backend_the_load_balancer_still_marks_down_is_named() -> None:
    cluster, nodes, gw = healthy_ha()
    gw.lb_down = {CP3}  # haproxy routes every request to the other two
    [line] = failures(cluster, nodes)
    assert line == (f"{LB}: load balancer routes to every apiserver: 6/6 requests through {LB} "
                    f"answered ok; no answer from {CP3}")


def test_without_serving_certs_from_curl_the_check_says_what_it_proved() -> None:
    cluster, nodes, gw = healthy_ha()
    gw.lb_down = {CP3}
    gw.curl_shows_certs = False  # curl < 7.88 has no %{certs}: who answered is unknown
    v = verify(cluster, nodes, wait=0)
    assert v.healthy
    [lb] = [c for c in v.checks if c.node == LB]
    assert lb.what.startswith("load balancer answers (which apiserver answered is unknown: ")
    assert "needs >= 7.88" in lb.what
    assert not any(c.what == "load balancer routes to every apiserver" for c in v.checks)


def test_served_by_names_the_control_plane_of_each_apiserver_certificate() -> None:
    cluster, nodes, _ = healthy_ha()
    for cp in cluster.control_planes:
        pem = nodes[cp.name].files["/etc/kubernetes/pki/apiserver.crt"].decode()
        assert verify_module.served_by(cluster, pem) == cp.name
    assert verify_module.served_by(cluster, "") is None
    assert verify_module.served_by(cluster, "-----BEGIN CERTIFICATE-----\nAAAA\n"
                                            "-----END CERTIFICATE-----\n") is None


def test_etcd_without_a_leader_fails_every_member_and_does_not_raise() -> None:
    cluster, nodes, gw = healthy_ha()
    gw.leader = None
    lines = failures(cluster, nodes)
    for cp in (CP, CP2, CP3):
        assert f"{cp}: etcd member has a leader: no leader / client port not answering" in lines


@pytest.mark.parametrize(
    ("listing", "bad"),
    [
        (
            "kind-control-plane    Ready    control-plane   5m   v1.29.2\n"
            "kind-worker           NotReady <none>          5m   v1.29.2\n",
            "kind-worker",
        ),
        ("", ""),
    ],
)
def test_kubectl_reports_nodes_that_are_not_ready(listing: str, bad: str) -> None:
    cluster, nodes, _ = healthy_ha()
    node = nodes[CP]
    node.on(("sh", "-c", "command -v kubectl"), ok("/usr/bin/kubectl\n"))
    node.on(("kubectl",), ok(listing))
    [line] = failures(cluster, nodes)
    assert line.startswith(f"{CP}: kubectl get nodes: all Ready: {bad}")


def test_kubectl_all_ready_is_healthy() -> None:
    cluster, nodes, _ = healthy_ha()
    node = nodes[CP]
    node.on(("sh", "-c", "command -v kubectl"), ok("/usr/bin/kubectl\n"))
    node.on(("kubectl",), ok("".join(f"{n.name}   Ready   control-plane   5m   v1.29.2\n"
                                     for n in cluster.kube_nodes)))
    assert failures(cluster, nodes) == []
    assert any(c[0] == "kubectl" for c in node.calls)


def test_kubectl_is_retried_until_every_node_is_listed_ready() -> None:
    cluster, nodes, _ = healthy_ha()
    node = nodes[CP]
    node.on(("sh", "-c", "command -v kubectl"), ok("/usr/bin/kubectl\n"))
    answers = [ExecResult(1, b"", b"The connection to the server was refused"),
               ok(f"{CP}   Ready   control-plane   5m   v1.29.2\n"),
               ok("".join(f"{n.name}   Ready   control-plane   5m   v1.29.2\n"
                          for n in cluster.kube_nodes))]
    node.on(("kubectl",), lambda *_: answers.pop(0) if len(answers) > 1 else answers[0])
    v = verify(cluster, nodes, wait=5)
    assert v.healthy, v.failures()
    assert sum(1 for c in node.calls if c[0] == "kubectl") == 3


def test_a_node_kubectl_does_not_list_is_named() -> None:
    cluster, nodes, _ = healthy_ha()
    node = nodes[CP]
    node.on(("sh", "-c", "command -v kubectl"), ok("/usr/bin/kubectl\n"))
    node.on(("kubectl",), ok(f"{CP}   Ready   control-plane   5m   v1.29.2\n"))
    [line] = failures(cluster, nodes)
    assert line == (f"{CP}: kubectl get nodes: all Ready: {CP2} not listed, {CP3} not listed, "
                    "kind-worker not listed")


def test_leases_held_and_renewed_by_control_planes_verify() -> None:
    cluster, nodes, _ = healthy_ha()
    v = verify(cluster, nodes, wait=0)
    got = {c.what: c for c in v.checks if "Lease" in c.what}
    assert got["kube-controller-manager holds and renews its Lease"].ok
    assert got["kube-controller-manager holds and renews its Lease"].detail.startswith(
        f"held by {CP}, renewed ")
    assert got["kube-scheduler holds and renews its Lease"].ok


def test_a_lease_nobody_renews_fails_even_though_every_healthz_is_ok() -> None:
    cluster, nodes, _ = healthy_ha()
    api = api_of(nodes)
    api.frozen["kube-scheduler"] = api.now - 40  # its holder stopped renewing 40 s ago
    [line] = failures(cluster, nodes)
    # 40 s and more (the fake node's clock moves on with every request verify makes)
    assert re.fullmatch(f"{CP}: kube-scheduler holds and renews its Lease: held by {CP2}, "
                        r"last renewed ([4-9]\d) s ago \(lease 15 s\)", line), line


def test_a_lease_not_renewed_since_verification_began_fails() -> None:
    cluster, nodes, _ = healthy_ha()
    api = api_of(nodes)
    api.frozen["kube-controller-manager"] = api.now - 5  # within its 15 s, but not since
    [line] = failures(cluster, nodes)  # wait=0: one read, which is when verification began
    assert line == (f"{CP}: kube-controller-manager holds and renews its Lease: held by {CP}, "
                    "not renewed since verification began")


def test_a_lease_held_by_a_stranger_or_missing_fails() -> None:
    cluster, nodes, _ = healthy_ha()
    api = api_of(nodes)
    api.holders["kube-controller-manager"] = "other-cluster-control-plane_99"
    del api.holders["kube-scheduler"]
    lines = failures(cluster, nodes)
    assert (f"{CP}: kube-controller-manager holds and renews its Lease: held by "
            "'other-cluster-control-plane_99', not a control plane of kind") in lines
    assert any(ln.startswith(f"{CP}: kube-scheduler holds and renews its Lease: 404")
               for ln in lines)


def test_a_controller_manager_with_a_stale_kubeconfig_is_named_though_healthz_says_ok() -> None:
    cluster, nodes, _ = healthy_ha()
    api_of(nodes).broken[(CP2, "/etc/kubernetes/controller-manager.conf")] = (
        "curl: (60) SSL: no alternative certificate subject name matches target host name "
        "'172.18.0.5'")
    [line] = failures(cluster, nodes)
    assert line.startswith(f"{CP2}: kube-controller-manager reaches the apiserver: "
                           "/etc/kubernetes/controller-manager.conf: error curl: (60)")


def test_kube_get_output_is_parsed() -> None:
    got = kubeapi.parse_kube_get('@@status 200\n{"a": 1}\n\n@@now 1700000000\n')
    assert got == kubeapi.KubeGet("200", '{"a": 1}', 1_700_000_000.0)
    got = kubeapi.parse_kube_get("@@status error curl: (7) refused\n\n@@now x\n")
    assert (got.status, got.body, got.now) == ("error curl: (7) refused", "", None)
    assert kubeapi.micro_time("2026-11-27T17:40:00.250000Z") == 1795801200.25
    assert kubeapi.micro_time("garbage") is None


def _ipv6_single_cp() -> tuple[Cluster, dict[str, FakeNode], FakeEtcd]:
    return etcd_as_recorded("ipv6-healthy", loopback="[::1]")


def test_an_ipv6_clusters_etcd_is_verified_through_loopback_v6() -> None:
    cluster, nodes, _ = _ipv6_single_cp()
    etcd_checks = [c for c in verify(cluster, nodes, wait=0).checks if "etcd" in c.what]
    assert len(etcd_checks) == 3
    assert all(c.ok for c in etcd_checks), etcd_checks


def test_a_healthy_ipv6_cluster_verifies_healthy() -> None:
    cluster, nodes, gw = _ipv6_single_cp()
    gw.v6_loopback_only = {10259}
    manifest = nodes[CP].files["/etc/kubernetes/manifests/kube-scheduler.yaml"]
    assert b"--bind-address=::1" in manifest
    assert failures(cluster, nodes) == []


def test_a_cordoned_node_is_still_ready() -> None:
    cluster, nodes, _ = healthy_ha()
    node = nodes[CP]
    node.on(("sh", "-c", "command -v kubectl"), ok("/usr/bin/kubectl\n"))
    node.on(("kubectl",), ok("".join(
        f"{n.name}   {'Ready,SchedulingDisabled' if n.name == 'kind-worker' else 'Ready'}   "
        "<none>   5m   v1.29.2\n" for n in cluster.kube_nodes)))
    assert failures(cluster, nodes) == []


def _member_list_refused(gw: FakeEtcd, times: int) -> None:
    """The member list request is refused `times` times (the member went away for a moment
    after it had answered with a leader), as a live etcd whose pod is being replaced does."""
    left = [times]

    def before(g: FakeEtcd) -> None:
        if g.requests[-1][1] == "/v3/cluster/member/list" and left[0] > 0:
            left[0] -= 1
            g.serving = lambda _node: False
        else:
            g.serving = None

    gw.before = before


def test_etcd_going_away_for_a_moment_after_its_leader_check_is_waited_for() -> None:
    cluster, nodes, gw = healthy_ha()
    _member_list_refused(gw, 2)
    v = verify(cluster, nodes, min_revision=gw.revision, wait=5)
    assert v.healthy, v.failures()
    assert [r[1] for r in gw.requests].count("/v3/cluster/member/list") == 3


def test_etcd_that_never_lists_its_members_is_a_failed_check_not_an_error() -> None:
    cluster, nodes, gw = healthy_ha()
    _member_list_refused(gw, 1000)
    lines = failures(cluster, nodes, min_revision=gw.revision)
    assert any("etcd member list and status read" in ln and "did not answer" in ln
               for ln in lines), lines


def test_until_an_apiserver_is_ready_verify_asks_nothing_else(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after a repair no apiserver answers for a while: verify asks only for a ready one
    (not ~18 checks twice a second, which starved the Lease release on a small machine)."""
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    cluster, nodes, gw = healthy_ha()
    ready_at: list[float] = []
    asked_unready: list[str] = []

    def before(_gw: FakeEtcd) -> None:
        _, path, _ = gw.requests[-1]
        if path.startswith("/v3/") or path == "/metrics":
            return  # etcd's own checks come first
        ready_at[:] = ready_at or [time.monotonic() + 0.3]  # unready for 0.3 s from here
        if time.monotonic() >= ready_at[0]:
            gw.unhealthy.clear()
        elif path != "/readyz":
            asked_unready.append(path)

    for cp in (CP, CP2, CP3):
        gw.unhealthy[(cp, 6443)] = "[-]etcd failed: reason withheld\nreadyz check failed"
    gw.before = before
    v = verify(cluster, nodes, min_revision=gw.revision, wait=30)
    assert v.healthy, v.failures()
    assert ready_at, "no apiserver was asked"
    assert asked_unready == []


def test_all_ready_is_called_once_every_apiserver_is_ready_and_changes_no_check() -> None:
    cluster, nodes, gw = healthy_ha()
    plain = verify(cluster, nodes, min_revision=gw.revision, wait=0)
    lb_asks: list[int] = []
    first = nodes[cluster.control_planes[0].name]
    before = len(first.ran("through-lb"))
    hooked = verify(cluster, nodes, min_revision=gw.revision, wait=0,
                    all_ready=lambda: lb_asks.append(len(first.ran("through-lb"))))
    # once; all were ready when verify first asked, so before the load balancer was asked
    assert lb_asks == [before]
    assert len(first.ran("through-lb")) == before + 1
    assert [(c.node, c.what, c.ok) for c in hooked.checks] == \
        [(c.node, c.what, c.ok) for c in plain.checks]


def test_all_ready_is_not_called_while_an_apiserver_is_not_ready() -> None:
    cluster, nodes, gw = healthy_ha()
    gw.unhealthy[(CP2, 6443)] = "[-]etcd failed: reason withheld\nreadyz check failed"
    called: list[bool] = []
    v = verify(cluster, nodes, min_revision=gw.revision, wait=0,
               all_ready=lambda: called.append(True))
    assert not v.healthy
    assert called == []


def test_a_load_balancer_made_to_route_once_all_are_ready_verifies(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What api.py does with all_ready (reload haproxy, so a backend it marked DOWN is UP): the
    load balancer check, still retrying beside, sees it."""
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    cluster, nodes, gw = healthy_ha()
    gw.lb_down = {CP3}
    v = verify(cluster, nodes, min_revision=gw.revision, wait=30, all_ready=gw.lb_down.clear)
    assert v.healthy, v.failures()


def test_etcd_is_checked_beside_the_wait_for_an_apiserver() -> None:
    """etcd's checks need no apiserver: the apiservers are asked while etcd still answers."""
    cluster, nodes, gw = healthy_ha()
    asked = threading.Event()
    waited: list[bool] = []

    def before(_gw: FakeEtcd) -> None:
        _, path, _ = gw.requests[-1]
        if path == "/readyz":
            asked.set()
        elif path.startswith("/v3/") and not waited:
            waited.append(asked.wait(timeout=5))  # the first etcd answer holds until then

    gw.before = before
    v = verify(cluster, nodes, min_revision=gw.revision, wait=5)
    assert v.healthy, v.failures()
    assert waited and all(waited)
