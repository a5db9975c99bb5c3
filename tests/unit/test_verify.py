"""Proving a cluster healthy by asking its live components (kindfix/verify.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kindfix import probes
from kindfix import verify as verify_module
from kindfix.discovery import Cluster
from kindfix.verify import verify
from tests.fakes import FakeNode, ok
from tests.unit.helpers_etcd import FakeEtcd
from tests.unit.helpers_nodes import dump

CP, CP2, CP3 = "kind-control-plane", "kind-control-plane2", "kind-control-plane3"
LB = "kind-external-load-balancer"


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
    return cluster, nodes, gw


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


def test_without_serving_certs_from_curl_the_answers_alone_count() -> None:
    cluster, nodes, gw = healthy_ha()
    gw.lb_down = {CP3}
    gw.curl_shows_certs = False  # curl < 7.88 has no %{certs}: who answered is unknown
    assert failures(cluster, nodes) == []


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
    node.on(("kubectl",), ok("kind-control-plane   Ready   control-plane   5m   v1.29.2\n"))
    assert failures(cluster, nodes) == []
    assert any(c[0] == "kubectl" for c in node.calls)


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
    node.on(
        ("kubectl",),
        ok(
            "kind-control-plane   Ready   control-plane   5m   v1.29.2\n"
            "kind-worker   Ready,SchedulingDisabled   <none>   5m   v1.29.2\n"
        ),
    )
    assert failures(cluster, nodes) == []
