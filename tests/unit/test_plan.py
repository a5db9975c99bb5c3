"""Planning over the fixture dumps: key-by-key rewrites, certificates, etcd strategy, LB."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kindfix.audit import audit
from kindfix.dump import load_dump
from kindfix.loadbalancer import lb_rewrites
from kindfix.patches import PATCHES_DIR, Patches, load_patches
from kindfix.plan import Plan, content_id, make_plan, restart_follows, restart_steps
from kindfix.yamlpath import YamlDocument

DUMPS = Path(__file__).parents[2] / "fixtures" / "dumps"


def plan_for(name: str, strategy: str = "auto") -> Plan:
    cluster, snaps = load_dump(DUMPS / name)
    return make_plan(cluster, snaps, audit(cluster, snaps), strategy)


@pytest.mark.parametrize("name", sorted(p.name for p in DUMPS.iterdir()
                                        if p.name.endswith("-healthy")))
def test_healthy_cluster_yields_an_empty_plan(name: str) -> None:
    plan = plan_for(name)
    assert plan.empty, [s.summary for s in plan.steps]
    assert plan.etcd_strategy == "none"


def test_permuted_ha_plan_rebuilds_initial_cluster_from_current_ips() -> None:
    cluster, snaps = load_dump(DUMPS / "ha-3cp-permuted")
    plan = make_plan(cluster, snaps, audit(cluster, snaps))
    assert plan.etcd_strategy == "snapshot-restore"
    ips = {n.name: n.ipv4 for n in cluster.control_planes}
    for step in plan.steps:
        if step.path.endswith("etcd.yaml"):
            doc = YamlDocument(step.content, step.path)
            [ref] = doc.find("spec.containers[name=etcd].command[flag=--initial-cluster]")
            for entry in ref.get().split(","):
                name, _, url = entry.partition("=")
                assert url == f"https://{ips[name]}:2380"
    kinds = [s.kind for s in plan.steps]
    assert kinds.index("regen-cert") < kinds.index("etcd") < kinds.index("start-lb")
    assert {s.phase for s in plan.steps if s.kind == "regen-cert"} >= {"etcd-server", "etcd-peer"}


def test_v014_restart_points_controller_manager_and_scheduler_at_loopback() -> None:
    plan = plan_for("single-cp-restart-v0.14")
    by_path = {s.path: s for s in plan.steps if s.kind == "write-file"}
    for path in ("/etc/kubernetes/controller-manager.conf", "/etc/kubernetes/scheduler.conf"):
        assert b"server: https://127.0.0.1:6443" in by_path[path].content
        assert "+    server: https://127.0.0.1:6443" in by_path[path].diff
    restarts = {s.phase for s in plan.steps if s.kind == "restart-pod"}
    assert {"kube-controller-manager", "kube-scheduler", "kube-apiserver"} <= restarts
    assert plan.etcd_strategy == "member-update"


def test_literal_haproxy_backends_are_rewritten_to_the_named_nodes() -> None:
    cluster, snaps = load_dump(DUMPS / "ha-3cp-haproxy-literal")
    plan = make_plan(cluster, snaps, audit(cluster, snaps))
    [lb] = [s for s in plan.steps if s.kind == "fix-lb"]
    assert "+  server" in lb.diff
    lb_node = cluster.load_balancer
    assert lb_node is not None
    [(old, new)] = lb_rewrites(cluster, snaps[lb_node.name]).values()
    for cp in cluster.control_planes:
        assert f"server {cp.name} {cp.ipv4}:6443".encode() in new
    assert old != new


def test_strategy_override_is_respected() -> None:
    assert plan_for("single-cp-restart-v0.15", "force-new-cluster").etcd_strategy == \
        "force-new-cluster"


# --- step identity (issue #9) -----------------------------------------------------------------


def test_a_step_names_what_it_changes_so_a_file_stale_again_is_new_work() -> None:
    """The journal skips steps whose identity it has seen done: a file rewritten once and
    stale again (other bytes, other IPs) must get another identity."""
    from dataclasses import replace

    from kindfix.discovery import Cluster

    cluster, snaps = load_dump(DUMPS / "single-cp-restart-v0.14")
    first = make_plan(cluster, snaps, audit(cluster, snaps))
    cp = cluster.control_planes[0]
    moved = Cluster(cluster.name, cluster.network, tuple(
        replace(n, ipv4="172.18.0.77") if n.name == cp.name else n for n in cluster.nodes))
    again = make_plan(moved, snaps, audit(moved, snaps))
    kinds = {s.kind for s in first.steps}
    assert {"write-file", "regen-cert", "etcd", "restart-pod"} <= kinds
    same = {s.key for s in first.steps} & {s.key for s in again.steps}
    # only a byte-identical change keeps its identity (a kubeconfig pointed at 127.0.0.1 gets
    # the same bytes whatever the node's IP, and the restart that follows it); certificates,
    # etcd and every other file are new work
    by_key = {s.key: s for s in first.steps}
    assert all(by_key[k].kind in ("write-file", "restart-pod") for k in same), same
    assert all(by_key[k].content == next(s for s in again.steps if s.key == k).content
               for k in same)
    files = [s for s in first.steps if s.kind == "write-file"]
    assert len([s for s in files if s.key in same]) < len(files)
    write = next(s for s in first.steps if s.kind == "write-file")
    old = snaps[write.node].file(write.path)
    assert write.key.startswith(f"file:{write.node}:{write.path}:")
    assert write.key.endswith(f"{content_id(old)}>{content_id(write.content)}")


def test_identities_are_stable_for_the_same_observation() -> None:
    assert [s.key for s in plan_for("ha-3cp-permuted").steps] == \
        [s.key for s in plan_for("ha-3cp-permuted").steps]


def test_no_etcd_work_without_evidence_even_when_a_strategy_is_requested() -> None:
    plan = plan_for("ha-3cp-healthy", "snapshot-restore")
    assert plan.empty and plan.etcd_strategy == "none"


def test_the_plan_follows_the_audit_findings_it_is_given() -> None:
    """Planning works from the report, not from a second audit of the snapshots: findings that
    say a certificate and a file are current plan neither."""
    from dataclasses import replace

    from kindfix.findings import OK

    cluster, snaps = load_dump(DUMPS / "single-cp-restart-v0.14")
    report = audit(cluster, snaps)
    plan = make_plan(cluster, snaps, report)
    assert "apiserver" in {s.phase for s in plan.steps if s.kind == "regen-cert"}
    assert "/etc/kubernetes/scheduler.conf" in {s.path for s in plan.steps}
    current = ("/etc/kubernetes/pki/apiserver.crt#SAN",
               "/etc/kubernetes/scheduler.conf#scheduler.server")
    said = replace(report, findings=tuple(replace(f, status=OK) if f.source in current else f
                                          for f in report.findings))
    again = make_plan(cluster, snaps, said)
    assert "apiserver" not in {s.phase for s in again.steps if s.kind == "regen-cert"}
    assert "/etc/kubernetes/scheduler.conf" not in {s.path for s in again.steps}
    assert "/etc/kubernetes/controller-manager.conf" in {s.path for s in again.steps}


# --- restarts follow the data (issue #12) -----------------------------------------------------

AGENT = "/etc/kubernetes/example-agent.conf"


def _patches_with_location(tmp_path: Path, restart: str) -> Patches:
    """A copy of the shipped data with one more location: a kubeconfig of a reader kindfix has
    no code for."""
    yaml = YAML(typ="safe")
    raw = yaml.load((PATCHES_DIR / "addresses.yaml").read_text())
    raw["files"]["control-plane"].append(AGENT)
    raw["locations"].append({"id": "example-agent.server", "component": "example-agent",
                             "file": AGENT, "required": True, "path": "clusters[*].cluster.server",
                             "restart": restart})
    with (tmp_path / "addresses.yaml").open("w") as out:
        yaml.dump(raw, out)
    return load_patches(tmp_path)


@pytest.mark.parametrize(("restart", "kind", "phase"), [
    ("pod/example-agent", "restart-pod", "example-agent"),
    ("kubelet", "restart-kubelet", ""),
])
def test_a_new_location_in_the_data_gets_its_restart_planned(
        tmp_path: Path, restart: str, kind: str, phase: str) -> None:
    patches = _patches_with_location(tmp_path, restart)
    cluster, snaps = load_dump(DUMPS / "single-cp-restart-v0.14")
    cp = cluster.control_planes[0].name
    stale = b"clusters:\n- cluster:\n    server: https://172.18.0.3:6443\n  name: kind\n"
    snaps = {**snaps, cp: replace(snaps[cp], files={**snaps[cp].files, AGENT: stale})}
    plan = make_plan(cluster, snaps, audit(cluster, snaps, patches), patches=patches)
    [write] = [s for s in plan.steps if s.path == AGENT]
    assert b"server: https://172.18.0.2:6443" in write.content
    restarts = [s for s in plan.steps if s.kind == kind and s.node == cp and AGENT in s.summary]
    assert [s.phase for s in restarts] == [phase], [s.summary for s in plan.steps]
    [restart_step] = restarts
    assert plan.steps.index(write) < plan.steps.index(restart_step)
    assert restart_follows(restart_step, write, patches)  # a scoped repair keeps it with the file
    # the shipped data knows no such reader: nothing restarts for the file
    assert not any(AGENT in s.summary for s in restart_steps([write], []) if s.kind == kind)


def test_restarts_as_planned_from_the_shipped_data() -> None:
    """One restart per node and reader, in the order of the files that ask for it, with the
    identity and summary shape the journal and the applier know."""
    plan = plan_for("single-cp-restart-v0.14")
    restarts = [s for s in plan.steps if s.kind in ("restart-pod", "restart-kubelet")]
    assert [(s.kind, s.node, s.phase) for s in restarts] == [
        ("restart-pod", "kind-control-plane", "kube-controller-manager"),
        ("restart-pod", "kind-control-plane", "kube-apiserver"),
        ("restart-pod", "kind-control-plane", "kube-scheduler")]
    assert restarts[0].key.startswith("restart:kind-control-plane:kube-controller-manager:")
    assert restarts[0].summary == ("restart kube-controller-manager (it reads "
                                   "/etc/kubernetes/controller-manager.conf only at start)")
    kubelet = restart_steps([replace(restarts[0], kind="write-file", key="k", node="n",
                                     path="/var/lib/kubelet/kubeadm-flags.env")], [])
    assert [(s.kind, s.node, s.key, s.summary) for s in kubelet] == [
        ("restart-kubelet", "n", "kubelet:n:" + hashlib.sha256(b"k").hexdigest()[:16],
         "restart the kubelet (it reads /var/lib/kubelet/kubeadm-flags.env only at start)")]
