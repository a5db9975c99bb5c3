"""Scoped repairs: only what was asked for, plus what it strictly needs (said in the plan), and a
one-line refusal where a part alone would make the cluster worse."""

from __future__ import annotations

import json

import pytest

from kindfix.audit import audit
from kindfix.errors import KindfixError
from kindfix.plan import Plan, make_plan
from kindfix.scope import part_of, scope_plan
from tests.unit.helpers_nodes import dump
from tests.unit.test_cli import Run, run, runtime_from_dump  # noqa: F401  (the CLI fixture)

SINGLE = "single-cp-restart-v0.14"  # kubeconfigs, kubeadm.conf, apiserver + etcd certs, etcd
HA = "ha-3cp-permuted"  # etcd manifests on two nodes, etcd certs everywhere, etcd, the LB


def plan_of(name: str) -> tuple[Plan, object]:
    cluster, snapshots, _ = dump(name)
    return make_plan(cluster, snapshots, audit(cluster, snapshots)), cluster


def kinds(plan: Plan) -> list[tuple[str, str]]:
    return [(s.kind, s.path or s.phase) for s in plan.steps]


def test_no_scope_is_the_whole_plan() -> None:
    plan, cluster = plan_of(SINGLE)
    scoped = scope_plan(plan, cluster)  # type: ignore[arg-type]
    assert scoped.plan == plan and not scoped.left_out


def test_kubeconfigs_bring_the_restarts_that_make_them_read() -> None:
    plan, cluster = plan_of(SINGLE)
    scoped = scope_plan(plan, cluster, only=["kubeconfigs"])  # type: ignore[arg-type]
    assert kinds(scoped.plan) == [
        ("write-file", "/etc/kubernetes/controller-manager.conf"),
        ("write-file", "/etc/kubernetes/scheduler.conf"),
        ("restart-pod", "kube-controller-manager"),
        ("restart-pod", "kube-scheduler")]
    assert all("not asked for" in s.summary for s in scoped.plan.steps
               if s.kind == "restart-pod")
    assert scoped.plan.etcd_strategy == "none"
    assert len(scoped.left_out) == len(plan.steps) - 4
    assert "4 of" in scoped.plan.scope


def test_etcd_brings_its_manifests_and_certificates() -> None:
    plan, cluster = plan_of(HA)
    scoped = scope_plan(plan, cluster, only=["etcd"])  # type: ignore[arg-type]
    parts = {part_of(s) for s in scoped.plan.steps}
    assert parts == {"etcd", "manifests", "certs"}
    assert not [s for s in scoped.plan.steps if s.kind in ("start-lb", "fix-lb")]
    assert scoped.plan.etcd_strategy == plan.etcd_strategy


def test_etcd_certificates_without_etcd_are_refused() -> None:
    plan, cluster = plan_of(HA)
    with pytest.raises(KindfixError, match="cut those members off") as err:
        scope_plan(plan, cluster, only=["certs"])  # type: ignore[arg-type]
    assert "\n" not in err.value.message


def test_certs_without_etcd_certs_are_fine() -> None:
    plan, cluster = plan_of("kubeadm-v1beta2-restart")
    with pytest.raises(KindfixError):  # its only certificates are etcd's
        scope_plan(plan, cluster, only=["certs"])  # type: ignore[arg-type]
    scoped = scope_plan(plan, cluster, only=["certs", "etcd"])  # type: ignore[arg-type]
    assert len(scoped.plan.steps) == len(plan.steps)


def test_node_scope_and_etcd_for_part_of_the_members_is_refused() -> None:
    plan, cluster = plan_of(HA)
    scoped = scope_plan(plan, cluster, only=["lb"],  # type: ignore[arg-type]
                        nodes=["kind-external-load-balancer"])
    assert [s.kind for s in scoped.plan.steps] == ["start-lb", "fix-lb"]
    with pytest.raises(KindfixError, match="every member at once"):
        scope_plan(plan, cluster, nodes=["kind-control-plane2"])  # type: ignore[arg-type]
    scoped = scope_plan(plan, cluster, only=["manifests"],  # type: ignore[arg-type]
                        nodes=["kind-control-plane2"])
    assert kinds(scoped.plan) == [("write-file", "/etc/kubernetes/manifests/etcd.yaml")]
    assert {s.node for s in scoped.plan.steps} == {"kind-control-plane2"}


def test_unknown_nodes_and_parts_are_one_line() -> None:
    plan, cluster = plan_of(SINGLE)
    with pytest.raises(KindfixError, match="not a node of cluster kind"):
        scope_plan(plan, cluster, nodes=["nope"])  # type: ignore[arg-type]
    with pytest.raises(KindfixError, match="not a part of a repair"):
        scope_plan(plan, cluster, only=["everything"])  # type: ignore[arg-type]


def test_cli_dry_run_scoped(run: Run) -> None:  # noqa: F811
    rt = runtime_from_dump(SINGLE)
    before = {name: dict(node.files) for name, node in rt.nodes.items()}
    r = run(["repair", "--dry-run", "--only", "kubeconfigs", "--only", "config", "-o", "json"],
            rt)
    assert r.code == 0
    data = json.loads(r.out)
    paths = {s["path"] for s in data["plan"]["steps"] if s["kind"] == "write-file"}
    assert paths == {"/etc/kubernetes/controller-manager.conf",
                     "/etc/kubernetes/scheduler.conf", "/kind/kubeadm.conf"}
    assert data["left_out"] and data["plan"]["scope"]
    assert {name: dict(node.files) for name, node in rt.nodes.items()} == before


def test_cli_refusal_is_one_line(run: Run) -> None:  # noqa: F811
    r = run(["repair", "--dry-run", "--only", "certs"], runtime_from_dump(SINGLE))
    assert r.code == 1
    assert r.err.startswith("kindfix: error: new etcd certificates on kind-control-plane")
    assert "Traceback" not in r.err
