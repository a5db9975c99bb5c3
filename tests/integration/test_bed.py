"""The test bed itself, on the real engine: shape, health, teardown, and that it breaks the way
TESTBED.md says kind clusters break when Docker permutes node IPs (issue #3, "Done when")."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

import docker
import pytest

from testbed import images as img
from testbed.bed import BED_LABEL, OWNER_LABEL, Bed, sweep_stale
from testbed.breaking import permute, restart_engine
from testbed.checks import check_bed, component_health, component_logs, lb_servers, member_list

pytestmark = pytest.mark.docker

ERRORS_WAIT_S = 45.0


def _leftovers(client: docker.DockerClient, bed_id: str) -> list[str]:
    label = f"{BED_LABEL}={bed_id}"
    names = [c.name for c in client.containers.list(all=True, filters={"label": label})]
    return names + [n.name for n in client.networks.list(filters={"label": label})]


def _eventually(what: str, probe: Callable[[], object], timeout_s: float = ERRORS_WAIT_S) -> object:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(1.0)
    pytest.fail(f"not within {timeout_s:.0f}s: {what}; last: {last!r}")


def _cm_kubeconfig(bed: Bed, node: str) -> str:
    return bed.exec(node, ["cat", "/etc/kubernetes/controller-manager.conf"]).stdout


def test_one_control_plane_bed_is_kind_shaped_healthy_and_leaves_nothing(
    make_bed: Callable[..., Bed], engine: docker.DockerClient
) -> None:
    bed = make_bed(control_planes=1, workers=1, generation="v0.15", seed_keys=20)
    report = check_bed(bed)
    assert report.healthy, report.reasons
    assert [d.keys for d in report.data] == [20]
    cp, worker = bed.control_planes[0], bed.workers[0]
    c = engine.containers.get(cp)
    assert c.labels["io.x-k8s.kind.cluster"] == bed.cluster
    assert c.labels["io.x-k8s.kind.role"] == "control-plane"
    assert engine.containers.get(worker).labels["io.x-k8s.kind.role"] == "worker"
    assert c.attrs["Config"]["Hostname"] == cp
    assert c.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 1}
    ip = bed.ips()[cp]
    assert bed.exec(cp, ["cat", "/kind/old-ipv4"]).stdout == ip  # no newline, like kind
    entrypoint = bed.exec(cp, ["cat", "/usr/local/bin/entrypoint"]).stdout
    assert "old-ipv4" in entrypoint
    assert "fix_certificate" in entrypoint
    assert "/etc/kubernetes/kubelet.conf" not in entrypoint  # v0.15, not v0.30
    # as on a real node, etcdctl lives only in the etcd image; crictl sees the etcd container
    assert not bed.exec(cp, ["sh", "-c", "command -v etcdctl"]).ok
    etcd_bin = f"{img.image_dir(img.ETCD_IMAGE)}/bin"
    assert bed.exec(cp, ["test", "-x", f"{etcd_bin}/etcdctl"]).ok
    assert not bed.exec(cp, ["test", "-e", f"{etcd_bin}/etcdutl"]).ok  # as in etcd 3.5 images
    assert not bed.exec(cp, ["test", "-e", img.image_dir(img.ETCD_IMAGE_ETCDUTL)]).ok
    assert bed.exec(cp, ["crictl", "ps", "--name", "etcd", "-q"]).stdout.strip()
    assert bed.exec(worker, ["test", "-s", "/etc/kubernetes/kubelet.conf"]).ok
    assert not bed.exec(worker, ["test", "-e", "/etc/kubernetes/manifests/etcd.yaml"]).ok
    assert f"--node-ip={ip}" in bed.exec(cp, ["cat", "/var/lib/kubelet/kubeadm-flags.env"]).stdout

    bed.destroy()
    assert _leftovers(engine, bed.id) == []


def test_sweep_removes_beds_of_dead_runs(
    engine: docker.DockerClient, bed_images: img.Images
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    labels = {BED_LABEL: "deadbed", OWNER_LABEL: f"{os.uname().nodename}:{dead.pid}"}
    net = engine.networks.create("kindbed-deadbed", labels=labels)
    engine.containers.create(
        bed_images.lb,
        name="kbdeadbed-control-plane",
        labels=labels,
        network=net.name,
        entrypoint=["true"],
    )
    try:
        assert "deadbed" in sweep_stale(engine)
        assert _leftovers(engine, "deadbed") == []
    finally:
        sweep_stale(engine)


def test_permuted_bed_without_fixup_loses_quorum_and_literal_lb_misroutes(
    make_bed: Callable[..., Bed],
) -> None:
    """Generation `none` (kind < v0.8) + kind v0.8's literal-IP haproxy; swap cp2 and cp3."""
    bed = make_bed(control_planes=3, generation="none", lb="literal", seed_keys=50)
    assert check_bed(bed).healthy
    cp1, cp2, cp3 = bed.control_planes
    perm = permute(bed, order=[cp1, cp3, cp2])
    assert sorted(perm.moved) == sorted([cp2, cp3])
    assert perm.after[cp2] == perm.before[cp3]
    assert perm.after[cp3] == perm.before[cp2]

    for moved in (cp2, cp3):
        _eventually(
            f"etcd on {moved} fails to bind its old peer URL",
            lambda m=moved: (
                f"listen tcp {perm.before[m]}:2380: bind: cannot assign requested address"
                in component_logs(bed, m, "etcd")
            ),
        )
    _eventually(
        "the unmoved member cannot publish itself",
        lambda: (
            "failed to publish local member to cluster through raft"
            in component_logs(bed, cp1, "etcd")
        ),
    )
    assert member_list(bed)[1], "member list must fail without quorum"

    # controller-manager on cp2 still dials cp2's old IP (now cp3's): unhealthy
    assert f"server: https://{perm.before[cp2]}:6443" in _cm_kubeconfig(bed, cp2)
    # its /healthz still says ok (it is not the leader: client-go LeaderElector.Check); what
    # shows it is cut off is leader election failing to read its Lease (CONTRACT.md)
    _eventually(
        "controller-manager on cp2 cannot reach its lease",
        lambda: (
            not next(
                h for h in component_health(bed, cp2)
                if h.component == "kube-controller-manager leader election"
            ).ok
        ),
    )

    servers = {s.name: s for s in lb_servers(bed)[0]}
    for name in (cp2, cp3):  # literal backends: old address, which now is the other node's
        assert servers[name].addr == perm.before[name] != perm.after[name]
    report = check_bed(bed)
    assert not report.healthy
    assert any("load balancer backend" in r for r in report.reasons)


def test_permuted_bed_with_v015_fixup_has_stale_etcd_peers_and_by_name_lb_follows(
    make_bed: Callable[..., Bed],
) -> None:
    """kind >= v0.15 rewrites flags and the apiserver cert; etcd certs and membership stay stale."""
    bed = make_bed(control_planes=3, generation="v0.15", lb="by-name", seed_keys=50, etcdutl=True)
    utl = f"{img.image_dir(img.ETCD_IMAGE_ETCDUTL)}/bin/etcdutl"
    assert bed.exec(bed.control_planes[2], [utl, "version"]).ok
    assert (
        img.ETCD_IMAGE_ETCDUTL
        in bed.exec(bed.control_planes[0], ["cat", "/etc/kubernetes/manifests/etcd.yaml"]).stdout
    )
    perm = permute(bed)  # rotated start order: all three move (TESTBED.md)
    assert sorted(perm.moved) == sorted(bed.control_planes)

    def x509_error() -> bool:
        return any(
            "x509: certificate is valid for" in component_logs(bed, n, "etcd")
            for n in bed.control_planes
        )

    _eventually("etcd peers refuse the certificates of the members now at the old IPs", x509_error)
    assert member_list(bed)[1], "member list must fail without quorum"

    def follows() -> bool:
        servers = {s.name: s.addr for s in lb_servers(bed)[0]}
        return all(servers.get(n) == perm.after[n] for n in bed.control_planes)

    _eventually("by-name haproxy backends follow the new IPs", follows, 30.0)
    report = check_bed(bed)
    assert not report.healthy
    assert any("etcd" in r for r in report.reasons)


@pytest.mark.engine_restart
@pytest.mark.skipif(
    os.environ.get("KINDFIX_ENGINE_RESTART") != "1",
    reason="restarts the Docker engine for the whole machine; set KINDFIX_ENGINE_RESTART=1",
)
def test_engine_restart_leaves_the_load_balancer_exited(make_bed: Callable[..., Bed]) -> None:
    bed = make_bed(control_planes=3, generation="v0.15", lb="by-name", seed_keys=10)
    restart_engine(bed)
    assert bed.lb is not None
    assert bed.client.containers.get(bed.lb).status == "exited"
    assert all(bed.ips()[n] for n in bed.nodes), "nodes come back by their restart policy"
