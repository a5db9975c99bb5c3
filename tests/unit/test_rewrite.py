"""New file content for stale addresses, key by key (kindfix/rewrite.py)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kindfix.audit import audit
from kindfix.audit.locations import location_findings
from kindfix.discovery import Cluster, ClusterNode
from kindfix.errors import KindfixError
from kindfix.findings import OK, STALE, UNKNOWN
from kindfix.observe import NodeSnapshot
from kindfix.patches import Location, load_patches
from kindfix.rewrite import APISERVER_CRT, file_changes, loopback_host, new_value
from tests.unit.helpers_nodes import DUMPS, dump

_KEY = ec.generate_private_key(ec.SECP256R1())
BROKEN = sorted(p.name for p in DUMPS.iterdir() if not p.name.endswith("-healthy"))


def apiserver_cert(dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> bytes:
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")]))
            .public_key(_KEY.public_key()).serial_number(7)
            .not_valid_before(now).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(_KEY, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


KUBE_NAMES = ("kind-control-plane", "kubernetes", "kubernetes.default")


def snap_with(cert: bytes | None) -> NodeSnapshot:
    return NodeSnapshot("kind-control-plane", "control-plane",
                        {APISERVER_CRT: cert} if cert is not None else {})


def loc(loc_id: str) -> Location:
    return next(x for x in load_patches().locations if x.id == loc_id)


V4 = ClusterNode("kind-control-plane", "control-plane", "running", "172.18.0.2", None, "img")
V6 = ClusterNode("kind-control-plane", "control-plane", "running", None,
                 "fc00:f853:ccd:e793::2", "img")


def test_loopback_host_follows_the_apiserver_certificate() -> None:
    kind_default = apiserver_cert((*KUBE_NAMES, "localhost"), ("10.96.0.1", "127.0.0.1"))
    user_address = apiserver_cert((*KUBE_NAMES, "localhost"), ("10.96.0.1", "192.168.1.10"))
    neither = apiserver_cert(KUBE_NAMES, ("10.96.0.1", "172.18.0.3"))
    assert loopback_host(snap_with(kind_default), 4) == "127.0.0.1"
    assert loopback_host(snap_with(user_address), 4) == "localhost"
    assert loopback_host(snap_with(neither), 4) is None
    assert loopback_host(snap_with(apiserver_cert(KUBE_NAMES, ("::1",))), 6) == "::1"
    assert loopback_host(snap_with(None), 4) is None
    assert loopback_host(snap_with(b"-----BEGIN CERTIFICATE-----\n!!\n"), 4) is None


@pytest.mark.parametrize(("node", "value", "cert", "want"), [
    (V4, "https://172.18.0.3:6443", apiserver_cert(("localhost",), ("127.0.0.1",)),
     "https://127.0.0.1:6443"),
    (V4, "https://172.18.0.3:6443", apiserver_cert(("localhost",), ("192.168.1.10",)),
     "https://localhost:6443"),
    (V4, "https://172.18.0.3:6443", apiserver_cert(KUBE_NAMES, ("172.18.0.3",)),
     "https://172.18.0.2:6443"),
    (V6, "https://[fc00:f853:ccd:e793::3]:6443", apiserver_cert((), ("::1",)),
     "https://[::1]:6443"),
    (V6, "https://[fc00:f853:ccd:e793::3]:6443", apiserver_cert(KUBE_NAMES, ()),
     "https://[fc00:f853:ccd:e793::2]:6443"),
], ids=["127.0.0.1", "localhost", "node-ip", "ipv6-loopback", "ipv6-node-ip"])
def test_controller_manager_server_points_at_a_loopback_the_cert_covers(
        node: ClusterNode, value: str, cert: bytes, want: str) -> None:
    cluster = Cluster("kind", "kind", (node,))
    assert new_value(loc("controller-manager.server"), value, node, cluster,
                     snap_with(cert)) == want


def test_ipv6_server_with_only_the_localhost_san_becomes_localhost() -> None:
    cluster = Cluster("kind", "kind", (V6,))
    got = new_value(loc("scheduler.server"), "https://[fc00:f853:ccd:e793::3]:6443", V6,
                    cluster, snap_with(apiserver_cert(("localhost",), ())))
    assert got == "https://localhost:6443"


def test_initial_cluster_is_rebuilt_from_each_members_current_ip() -> None:
    cluster, _, _ = dump("ha-3cp-permuted")  # cp .3->.5, cp2 .4->.3, cp3 .5->.4
    ips = {n.name: n.ipv4 for n in cluster.control_planes}
    # what the v0.15 entrypoint's global sed left on control-plane2: one IP named twice
    corrupted = ("kind-control-plane=https://172.18.0.3:2380,"
                 "kind-control-plane2=https://172.18.0.3:2380,"
                 "kind-control-plane3=https://172.18.0.5:2380,gone=https://172.18.0.9:2380")
    node = cluster.node("kind-control-plane2")
    assert node is not None
    got = new_value(loc("etcd.initial-cluster"), corrupted, node, cluster,
                    NodeSnapshot(node.name, node.role, {}))
    assert got == (f"kind-control-plane=https://{ips['kind-control-plane']}:2380,"
                   f"kind-control-plane2=https://{ips['kind-control-plane2']}:2380,"
                   f"kind-control-plane3=https://{ips['kind-control-plane3']}:2380,"
                   "gone=https://172.18.0.9:2380")


def test_endpoint_values_follow_the_endpoint_except_a_control_planes_kubelet() -> None:
    cluster, _, _ = dump("ha-3cp-healthy")
    lb, cp2 = cluster.load_balancer, cluster.node("kind-control-plane2")
    assert lb is not None
    assert cp2 is not None
    snap = NodeSnapshot(cp2.name, cp2.role, {})
    stale = "https://172.18.0.99:6443"
    assert new_value(loc("admin.server"), stale, cp2, cluster, snap) == \
        f"https://{lb.ipv4}:6443"
    assert new_value(loc("kubelet.server"), stale, cp2, cluster, snap) == \
        f"https://{cp2.ipv4}:6443"
    worker = cluster.workers[0]
    assert new_value(loc("kubelet.server"), stale, worker, cluster,
                     NodeSnapshot(worker.name, worker.role, {})) == f"https://{lb.ipv4}:6443"
    # which endpoint is the data's (`repair`), not a rule on the file's name
    local_admin = replace(loc("admin.server"), repair="local-endpoint")
    assert new_value(local_admin, stale, cp2, cluster, snap) == f"https://{cp2.ipv4}:6443"
    kubelet_to_lb = replace(loc("kubelet.server"), repair="endpoint")
    assert new_value(kubelet_to_lb, stale, cp2, cluster, snap) == f"https://{lb.ipv4}:6443"


def test_dual_stack_node_ip_keeps_each_family() -> None:
    node = replace(V4, ipv6="fc00:f853:ccd:e793::2")
    cluster = Cluster("kind", "kind", (node,))
    got = new_value(loc("kubelet.node-ip"), "172.18.0.3,fc00:f853:ccd:e793::3", node, cluster,
                    NodeSnapshot(node.name, node.role, {}))
    assert got == "172.18.0.2,fc00:f853:ccd:e793::2"


def _rewritten(name: str) -> tuple[Cluster, dict[str, NodeSnapshot], int]:
    cluster, snaps, _ = dump(name)
    patches = load_patches()
    findings = audit(cluster, snaps).findings
    count = 0
    out = {}
    for node in cluster.kube_nodes:
        snap = snaps[node.name]
        changes = file_changes(snap, node, cluster, patches, findings)
        count += len(changes)
        for c in changes:
            assert c.node == node.name
            assert c.old == snap.file(c.path)
            assert c.new != c.old
        out[node.name] = replace(snap, files={**snap.files, **{c.path: c.new for c in changes}})
    return cluster, out, count


# fixtures/README.md: where the node entrypoint left stale files (v0.14 sed, v0.8 LB, the
# permutation's corrupted --initial-cluster); in the other broken dumps only certificates,
# etcd membership or the load balancer are stale, which file rewrites do not touch.
STALE_FILES = ("single-cp-restart-v0.14", "ha-3cp-permuted", "ha-3cp-haproxy-literal")


@pytest.mark.parametrize("name", STALE_FILES)
def test_after_the_rewrite_no_location_is_stale(name: str) -> None:
    cluster, fixed, count = _rewritten(name)
    assert count > 0
    patches = load_patches()
    for node in cluster.kube_nodes:
        stale = [f for f in location_findings(fixed[node.name], node, cluster, patches)
                 if f.status == STALE]
        assert stale == [], stale


@pytest.mark.parametrize("name", sorted(set(BROKEN) - set(STALE_FILES)))
def test_when_the_entrypoint_fixed_every_file_nothing_is_rewritten(name: str) -> None:
    assert _rewritten(name)[2] == 0


def test_only_the_addressed_scalars_change() -> None:
    cluster, snaps, _ = dump("single-cp-restart-v0.14")
    node = cluster.control_planes[0]
    changes = {c.path: c for c in file_changes(snaps[node.name], node, cluster, load_patches(),
                                               audit(cluster, snaps).findings)}
    cm = changes["/etc/kubernetes/controller-manager.conf"]
    diff = [(a, b) for a, b in zip(cm.old.splitlines(), cm.new.splitlines()) if a != b]
    assert len(cm.old.splitlines()) == len(cm.new.splitlines())
    assert diff == [(b"    server: https://172.18.0.3:6443", b"    server: https://127.0.0.1:6443")]
    assert cm.locations == ("controller-manager.server",)


# --- the rewrite follows audit's findings, it does not judge again ----------------------------


def test_only_what_the_findings_call_stale_is_rewritten() -> None:
    cluster, snaps, _ = dump("single-cp-restart-v0.14")
    node = cluster.control_planes[0]
    findings = audit(cluster, snaps).findings
    cm = "/etc/kubernetes/controller-manager.conf#controller-manager.server"
    assert any(f.source == cm and f.status == STALE for f in findings)
    said_ok = tuple(replace(f, status=OK) if f.source == cm else f for f in findings)
    changes = file_changes(snaps[node.name], node, cluster, load_patches(), said_ok)
    paths = {c.path for c in changes}
    assert "/etc/kubernetes/controller-manager.conf" not in paths
    assert "/etc/kubernetes/scheduler.conf" in paths  # still stale in the findings


def test_an_unknown_finding_refuses_the_node() -> None:
    cluster, snaps, _ = dump("single-cp-restart-v0.14")
    node = cluster.control_planes[0]
    findings = list(audit(cluster, snaps).findings)
    findings.append(replace(findings[0], status=UNKNOWN, detail="file is missing",
                            source="/etc/kubernetes/scheduler.conf"))
    with pytest.raises(KindfixError, match=r"will not plan a repair: .*scheduler\.conf"):
        file_changes(snaps[node.name], node, cluster, load_patches(), findings)


def test_findings_of_another_read_of_the_node_are_refused() -> None:
    cluster, snaps, _ = dump("single-cp-restart-v0.14")
    node = cluster.control_planes[0]
    findings = audit(cluster, snaps).findings
    path = "/etc/kubernetes/scheduler.conf"
    raw = snaps[node.name].file(path)
    assert raw is not None
    edited = raw.replace(b"server: https://", b"server: https://x")  # not what audit saw
    snap = replace(snaps[node.name], files={**snaps[node.name].files, path: edited})
    with pytest.raises(KindfixError, match="which audit did not see there"):
        file_changes(snap, node, cluster, load_patches(), findings)
