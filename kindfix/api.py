"""One core call per CLI command. Returns data; never prints."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from kindfix import dump, etcd_recovery, retention
from kindfix.apply import Applier
from kindfix.audit import AuditReport, audit
from kindfix.discovery import Cluster, ClusterNode, discover, list_clusters, require_running
from kindfix.errors import KindfixError
from kindfix.journal import (
    Journal,
    RunRecorder,
    load_journals,
    new_run_id,
    unfinished,
)
from kindfix.journal import rollback as restore_files
from kindfix.lock import Holder, cluster_lock
from kindfix.names import validate_cluster_name
from kindfix.node import ContainerNode, Node
from kindfix.observe import NodeSnapshot, snapshot_cluster
from kindfix.patches import CONTROL_PLANE
from kindfix.pin import PinResult
from kindfix.pin import pin as pin_ips
from kindfix.pin import unpin as unpin_ips
from kindfix.plan import Plan, Step, make_plan
from kindfix.runtime import Runtime
from kindfix.verify import Verification, verify


@dataclass(frozen=True)
class Observed:
    cluster: Cluster
    snapshots: dict[str, NodeSnapshot]


def clusters(runtime: Runtime) -> list[str]:
    runtime.ping()
    return list_clusters(runtime)


def nodes(runtime: Runtime, name: str) -> Cluster:
    validate_cluster_name(name)
    runtime.ping()
    return discover(runtime, name)


def node_factory(runtime: Runtime) -> Callable[[ClusterNode], Node]:
    def make(node: ClusterNode) -> Node:
        return ContainerNode(runtime, node.name, node.role)
    return make


def observe(runtime: Runtime, name: str) -> Observed:
    validate_cluster_name(name)
    runtime.ping()
    cluster = discover(runtime, name)
    require_running(cluster)
    return Observed(cluster, snapshot_cluster(cluster, node_factory(runtime)))


def audit_live(runtime: Runtime, name: str) -> AuditReport:
    seen = observe(runtime, name)
    return audit(seen.cluster, seen.snapshots)


def audit_dump(directory: Path) -> AuditReport:
    cluster, snapshots = dump.load_dump(directory)
    return audit(cluster, snapshots)


def collect(runtime: Runtime, name: str, directory: Path) -> Path:
    runtime.ping()  # no require_running: a stopped node is what a bug report needs to show
    return dump.collect(runtime, name, directory, node_factory(runtime))


# --- repair -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepairOutcome:
    cluster: str
    plan: Plan
    run_id: str | None = None
    resumed: bool = False
    dry_run: bool = False
    applied: tuple[str, ...] = ()
    verification: Verification | None = None
    pinned: tuple[PinResult, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.verification is not None and self.verification.healthy


def _with_parked_etcd(snapshots: dict[str, NodeSnapshot], nodes: Mapping[str, Node]
                      ) -> dict[str, NodeSnapshot]:
    """A run killed mid-recovery leaves etcd.yaml parked: read it where audit expects it."""
    out = dict(snapshots)
    for name, snap in snapshots.items():
        if snap.role == CONTROL_PLANE and snap.file(etcd_recovery.MANIFEST) is None:
            parked = nodes[name].read_file(etcd_recovery.PARKED)
            if parked is not None:
                out[name] = replace(snap, files={**snap.files, etcd_recovery.MANIFEST: parked})
    return out


UNOBSERVABLE = ("etcd", "restart-pod", "restart-kubelet", "start-lb", "fix-lb")


def _remember_pending(journal: Journal, plan: Plan) -> None:
    known = {p["key"] for p in journal.pending}
    journal.pending += [{"key": s.key, "kind": s.kind, "node": s.node, "summary": s.summary,
                         "phase": s.phase}
                        for s in plan.steps if s.kind in UNOBSERVABLE and s.key not in known]


def _with_unfinished_steps(plan: Plan, journal: Journal) -> Plan:
    """Steps a killed run planned but did not finish, whose effect the files do not show."""
    have = {s.key for s in plan.steps}
    extra = [Step(p["key"], p["kind"], p["node"], f"{p['summary']} (unfinished in run "
                  f"{journal.run_id})", phase=p["phase"])
             for p in journal.pending if p["key"] not in journal.done and p["key"] not in have]
    if not extra:
        return plan
    order = {kind: i for i, kind in enumerate(UNOBSERVABLE)}
    steps = [s for s in plan.steps if s.kind not in UNOBSERVABLE]
    rest = sorted([s for s in plan.steps if s.kind in UNOBSERVABLE] + extra,
                  key=lambda s: order[s.kind])
    strategy = next((s.phase for s in rest if s.kind == "etcd"), plan.etcd_strategy)
    return replace(plan, steps=(*steps, *rest), etcd_strategy=strategy)


def prepare_repair(runtime: Runtime, name: str, strategy: str = "auto"
                   ) -> tuple[Cluster, dict[str, Node], dict[str, NodeSnapshot], AuditReport,
                              Plan, Journal | None]:
    runtime.ping()
    cluster = discover(runtime, name)
    require_running(cluster)
    if not cluster.control_planes:
        raise KindfixError(f"cluster {name} has no control-plane node",
                           hint="is this a kind cluster? check `kindfix nodes`")
    make = node_factory(runtime)
    nodes = {n.name: make(n) for n in cluster.nodes}
    journal = unfinished(nodes[cluster.control_planes[0].name], name)
    snapshots = _with_parked_etcd(snapshot_cluster(cluster, make), nodes)
    report = audit(cluster, snapshots)
    plan = make_plan(cluster, snapshots, report, strategy)
    if journal is not None:
        plan = _with_unfinished_steps(plan, journal)
    return cluster, nodes, snapshots, report, plan, journal


def repair(runtime: Runtime, name: str, *, dry_run: bool = False, strategy: str = "auto",
           confirm: Callable[[Plan], bool] = lambda _: True,
           progress: Callable[[str], None] = lambda _: None,
           pin_after: bool = False, verify_wait: float = 60) -> RepairOutcome:
    with cluster_lock(runtime, name, "repair", progress):
        cluster, nodes, snapshots, report, plan, journal = prepare_repair(runtime, name, strategy)
        if dry_run:
            return RepairOutcome(name, plan, dry_run=True)
        applied: tuple[str, ...] = ()
        run_id = journal.run_id if journal else None
        resumed = journal is not None
        if not plan.empty:
            if not confirm(plan):
                raise KindfixError("repair cancelled; nothing was changed")
            journal = journal or Journal(new_run_id(), name)
            recorder = RunRecorder(journal, nodes[cluster.control_planes[0].name])
            _remember_pending(journal, plan)
            recorder.save()
            run_id = journal.run_id
            progress(f"run {run_id}: backups in /kind/kindfix/backups/{run_id}/ on each node")
            try:
                applied = tuple(Applier(runtime, cluster, nodes, snapshots, recorder,
                                        progress).apply(plan))
            except BaseException:
                journal.status = "failed"
                recorder.save()
                raise
        if cluster.load_balancer and not cluster.load_balancer.running:
            cluster = discover(runtime, name)
            nodes = {n.name: node_factory(runtime)(n) for n in cluster.nodes}
        progress("verifying: etcd, apiserver, controller-manager, scheduler, load balancer")
        before = max(report.etcd.revisions.values(), default=0)
        verification = verify(cluster, nodes, min_revision=before, wait=verify_wait)
        if journal is not None and run_id is not None:
            journal.status = "done" if verification.healthy else "failed"
            RunRecorder(journal, nodes[cluster.control_planes[0].name]).save()
        pinned: tuple[PinResult, ...] = ()
        warnings: tuple[str, ...] = ()
        if pin_after and verification.healthy:
            results, warns = pin_ips(runtime, discover(runtime, name), progress)
            pinned, warnings = tuple(results), tuple(warns)
        return RepairOutcome(name, plan, run_id, resumed, False, applied, verification, pinned,
                             warnings)


def rollback(runtime: Runtime, name: str, run_id: str | None = None) -> tuple[str, list[str]]:
    with cluster_lock(runtime, name, "rollback"):
        runtime.ping()
        cluster = discover(runtime, name)
        require_running(cluster)
        make = node_factory(runtime)
        nodes = {n.name: make(n) for n in cluster.nodes}
        journals = load_journals(nodes[cluster.control_planes[0].name])
        journals = [j for j in journals if j.cluster == name and j.files]
        if run_id:
            journals = [j for j in journals if j.run_id == run_id]
        if not journals:
            raise KindfixError(f"no repair run {run_id + ' ' if run_id else ''}to roll back "
                               f"for cluster {name}", hint="list runs with `kindfix runs`")
        journal = journals[-1]
        restored = restore_files(nodes, journal)
        journal.status = "rolled-back"
        RunRecorder(journal, nodes[cluster.control_planes[0].name]).save()
        return journal.run_id, restored


def runs(runtime: Runtime, name: str) -> list[Journal]:
    validate_cluster_name(name)
    runtime.ping()
    cluster = discover(runtime, name)
    require_running(cluster)
    node = node_factory(runtime)(cluster.control_planes[0])
    return [j for j in load_journals(node) if j.cluster == name]


def pin(runtime: Runtime, name: str, progress: Callable[[str], None]
        ) -> tuple[list[PinResult], list[str]]:
    with cluster_lock(runtime, name, "pin", progress):
        return pin_ips(runtime, discover(runtime, name), progress)


def unpin(runtime: Runtime, name: str, progress: Callable[[str], None]) -> list[PinResult]:
    with cluster_lock(runtime, name, "unpin", progress):
        return unpin_ips(runtime, discover(runtime, name), progress)


def prune_runs(runtime: Runtime, name: str, keep: int, dry_run: bool = False
               ) -> retention.PruneResult:
    """Delete old finished runs' journals and backups (kindfix/retention.py has the rule);
    under the cluster's lock, except a dry run, which only lists."""
    validate_cluster_name(name)
    with nullcontext() if dry_run else cluster_lock(runtime, name, "runs --prune"):
        runtime.ping()
        cluster = discover(runtime, name)
        require_running(cluster)
        make = node_factory(runtime)
        nodes = {n.name: make(n) for n in cluster.nodes}
        first = cluster.control_planes[0].name if cluster.control_planes else ""
        if not first:
            raise KindfixError(f"cluster {name} has no control-plane node")
        return retention.prune(name, nodes, first, load_journals(nodes[first]), keep, dry_run)


def unlock(runtime: Runtime, name: str, force: bool = False) -> Holder | None:
    """Break the cluster's lock left by a dead kindfix (kindfix/lock.py says how it tells)."""
    from kindfix import lock
    return lock.unlock(runtime, name, force)
