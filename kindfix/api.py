"""One core call per CLI command. Returns data; never prints."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from threading import Event, Thread

from kindfix import backoff, boot, dump, resume, retention, settle
from kindfix.apply import Applier
from kindfix.audit import AuditReport, audit
from kindfix.discovery import Cluster, ClusterNode, discover, list_clusters, require_running
from kindfix.errors import KindfixError
from kindfix.journal import (
    CONTINUABLE,
    DONE,
    FAILED,
    INTERRUPTED,
    ROLLED_BACK,
    RUNNING,
    UNHEALTHY,
    Journal,
    RunRecorder,
    last_run,
    load_journals,
    new_run_id,
)
from kindfix.journal import rollback as restore_files
from kindfix.leases import LeaseReleaser
from kindfix.loadbalancer import HAPROXY_CFG
from kindfix.loadbalancer_write import reload_once_ready
from kindfix.lock import Holder, cluster_lock
from kindfix.names import validate_cluster_name
from kindfix.node import ContainerNode, Node
from kindfix.observe import NodeSnapshot, snapshot_cluster
from kindfix.pin import PinResult
from kindfix.pin import pin as pin_ips
from kindfix.pin import unpin as unpin_ips
from kindfix.plan import Plan, make_plan
from kindfix.runtime import Runtime
from kindfix.scope import scope_plan
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
    left_out: tuple[str, ...] = ()  # a scoped repair's steps not taken (scope.py)

    @property
    def healthy(self) -> bool:
        return self.verification is not None and self.verification.healthy


def _observe_for_repair(cluster: Cluster, nodes: Mapping[str, Node], runtime: Runtime
                        ) -> tuple[dict[str, NodeSnapshot], AuditReport]:
    """Snapshots and their audit, with an etcd manifest a killed run parked read where audit
    expects it (resume.py)."""
    snapshots = snapshot_cluster(cluster, node_factory(runtime))
    parked = {name: nodes[name].read_file(resume.PARKED)
              for name in resume.parked_manifests_wanted(snapshots)}
    snapshots, parked_on = resume.with_parked_etcd(snapshots, parked)
    return snapshots, resume.parked_is_evidence(audit(cluster, snapshots), parked_on)


def prepare_repair(runtime: Runtime, name: str, strategy: str = "auto", *,
                   etcd_wait: float = settle.DEFAULT_WAIT,
                   progress: Callable[[str], None] = lambda _: None,
                   boot_wait: float = boot.DEFAULT_WAIT,
                   ) -> tuple[Cluster, dict[str, Node], dict[str, NodeSnapshot], AuditReport,
                              Plan, Journal | None, tuple[str, ...]]:
    """Observe, wait (bounded) for etcd when it may be merely starting, observe again, plan.

    A killed or interrupted run is continued; one that ended (even NOT healthy) is not:
    the plan comes from what the cluster shows now (issue #9); the last item says so."""
    runtime.ping()
    cluster = discover(runtime, name)
    require_running(cluster)
    if not cluster.control_planes:
        raise KindfixError(f"cluster {name} has no control-plane node",
                           hint="is this a kind cluster? check `kindfix nodes`")
    make = node_factory(runtime)
    nodes = {n.name: make(n) for n in cluster.nodes}
    # nodes Docker just started may still run kind's entrypoint, which rewrites the files about
    # to be read: wait until it has handed over to systemd (boot.py)
    boot.wait_for_systemd(nodes, [n.name for n in (*cluster.control_planes, *cluster.workers)],
                          boot_wait, progress)
    with ThreadPoolExecutor(max_workers=1) as pool:  # the journals are read beside the files
        last_read = pool.submit(last_run, nodes[cluster.control_planes[0].name], name)
        snapshots, report = _observe_for_repair(cluster, nodes, runtime)
        last = last_read.result()
    journal = last if last is not None and last.status in CONTINUABLE else None
    said: tuple[str, ...] = ()
    if journal is not None:
        progress(f"continuing run {journal.run_id} ({journal.status}: it did not finish)")
    elif last is not None and last.status in (UNHEALTHY, FAILED):
        said = (f"the last repair, run {last.run_id}, ended {last.status} (NOT healthy); it is "
                "not continued: this repair plans from what the cluster shows now (its files: "
                f"`kindfix rollback {last.run_id}`)",)
        progress(said[0])
    if etcd_wait > 0 and settle.needs_wait(report.etcd) and not resume.pending_etcd(journal):
        progress(f"etcd shows no leader yet and no file shows a stale etcd address: waiting up "
                 f"to {etcd_wait:.0f} s for it to start (--etcd-start-wait)")
        settled = settle.wait_for_etcd(lambda: settle.poll_etcd(cluster, nodes), etcd_wait,
                                       progress)
        progress(f"etcd after {settled.waited:.0f} s: " + {
            settle.LEADER: "a member has a leader",
            settle.LOST: "a majority of members run without a leader: quorum lost",
            settle.UNKNOWN: "still not running; it is left alone"}[settled.verdict])
        snapshots, report = _observe_for_repair(cluster, nodes, runtime)
        report = settle.conclude(report, cluster, settled)
    plan = make_plan(cluster, snapshots, report, strategy)
    if journal is not None:
        plan = resume.with_unfinished_steps(plan, journal)
    return cluster, nodes, snapshots, report, plan, journal, said


def _clear_backoff(cluster: Cluster, nodes: Mapping[str, Node],
                   progress: Callable[[str], None]) -> None:
    """backoff.clear beside verify: a node that fails it is one line; verify has the verdict."""
    try:
        backoff.clear(cluster, nodes, progress)
    except KindfixError as e:
        progress(f"could not clear the kubelets' restart back-off: {e.message}")


@dataclass(frozen=True)
class Applied:
    run_id: str | None
    applied: tuple[str, ...]
    verification: Verification


def apply_and_verify(runtime: Runtime, name: str, cluster: Cluster, nodes: dict[str, Node],
                     snapshots: Mapping[str, NodeSnapshot], plan: Plan, journal: Journal | None,
                     *, confirm: Callable[[Plan], bool], progress: Callable[[str], None],
                     verify_wait: float, min_revision: int, what: str = "repair",
                     release_leases: bool = True) -> Applied:
    """After a confirmation: journal the run, apply the plan (continuing `journal` when given),
    then verify the cluster and record how the run ended. Shared by repair and restore."""
    applied: tuple[str, ...] = ()
    run_id = journal.run_id if journal else None
    releaser: LeaseReleaser | None = None
    ending: RunRecorder | None = None
    if not plan.empty:
        if not confirm(plan):
            raise KindfixError(f"{what} cancelled; nothing was changed")
        journal = journal or Journal(new_run_id(), name)
        journal.status = RUNNING  # a kill from here on leaves it to be continued
        ending = recorder = RunRecorder(journal, nodes[cluster.control_planes[0].name])
        resume.remember_pending(journal, plan)
        recorder.save()
        run_id = journal.run_id
        progress(f"run {run_id}: backups in /kind/kindfix/backups/{run_id}/ on each node")
        # old holders' Leases are released (leases.py) from when the apiservers can answer
        # again (the etcd step's members started), beside the rest of the repair and verify
        due = Event()
        releaser = LeaseReleaser(cluster, nodes, progress, recorder.add_note, verify_wait,
                                 due).start() if release_leases else None
        try:
            applied = tuple(Applier(runtime, cluster, nodes, snapshots, recorder,
                                    progress, due).apply(plan))
        except BaseException:
            if releaser is not None:
                releaser.stop()
            journal.status = INTERRUPTED  # continued by the next repair (a killed run too)
            recorder.save()
            raise
    elif journal is not None and run_id is not None:
        ending = RunRecorder(journal, nodes[cluster.control_planes[0].name])
        # kindfix changed something before: old holders' Leases are released beside verify
        releaser = LeaseReleaser(cluster, nodes, progress, ending.add_note,
                                 verify_wait).start() if release_leases else None
    if cluster.load_balancer and not cluster.load_balancer.running:
        cluster = discover(runtime, name)
        nodes = {n.name: node_factory(runtime)(n) for n in cluster.nodes}
    progress("verifying: etcd, apiserver, controller-manager, scheduler, load balancer")
    # and the kubelets' restart back-off of the control-plane pods is cleared beside verify too
    # (backoff.py, issue #10): verify waits for what comes up, whichever clears it
    clearing = Thread(target=_clear_backoff, args=(cluster, nodes, progress), daemon=True,
                      name="kindfix-backoff") if not plan.empty else None
    if clearing is not None:
        clearing.start()
    try:
        verification = verify(cluster, nodes, min_revision=min_revision, wait=verify_wait,
                              all_ready=None if plan.empty else
                              lambda: _reload_lb(runtime, cluster, nodes, snapshots, progress))
    finally:
        if releaser is not None:
            releaser.stop()
        if clearing is not None:
            clearing.join(timeout=backoff.WAIT_S + 90)  # its execs and its wait are bounded
    if ending is not None:
        ending.journal.status = DONE if verification.healthy else UNHEALTHY
        ending.save()
    return Applied(run_id, applied, verification)


def _reload_lb(runtime: Runtime, cluster: Cluster, nodes: Mapping[str, Node],
               snapshots: Mapping[str, NodeSnapshot], progress: Callable[[str], None]) -> None:
    """The repair stopped the apiservers (or their etcd) for a while: once all are ready again,
    haproxy is made to route to them at once (loadbalancer_write.reload_once_ready)."""
    lb = cluster.load_balancer
    if lb is None or not lb.running:
        return
    node = nodes.get(lb.name) or ContainerNode(runtime, lb.name, lb.role)
    snap = snapshots.get(lb.name)
    known = snap.file(HAPROXY_CFG) is not None if snap is not None else None
    reload_once_ready(runtime, lb, node, known, progress)


def repair(runtime: Runtime, name: str, *, dry_run: bool = False, strategy: str = "auto",
           confirm: Callable[[Plan], bool] = lambda _: True,
           progress: Callable[[str], None] = lambda _: None,
           pin_after: bool = False, verify_wait: float = 60,
           etcd_wait: float = settle.DEFAULT_WAIT, only: Collection[str] = (),
           nodes: Collection[str] = ()) -> RepairOutcome:
    with cluster_lock(runtime, name, "repair", progress):
        cluster, members, snapshots, report, plan, journal, said = prepare_repair(
            runtime, name, strategy, etcd_wait=etcd_wait, progress=progress)
        scoped = scope_plan(plan, cluster, only, nodes)
        plan = scoped.plan
        if dry_run:
            return RepairOutcome(name, plan, dry_run=True, warnings=said,
                                 left_out=scoped.left_out)
        resumed = journal is not None
        before = max(report.etcd.revisions.values(), default=0)
        done = apply_and_verify(runtime, name, cluster, members, snapshots, plan, journal,
                                confirm=confirm, progress=progress, verify_wait=verify_wait,
                                min_revision=before,
                                release_leases=not only or "restarts" in only)
        run_id, applied, verification = done.run_id, done.applied, done.verification
        pinned: tuple[PinResult, ...] = ()
        warnings: tuple[str, ...] = said
        if pin_after and verification.healthy:
            results, warns = pin_ips(runtime, discover(runtime, name), progress)
            pinned, warnings = tuple(results), said + tuple(warns)
        return RepairOutcome(name, plan, run_id, resumed, False, applied, verification, pinned,
                             warnings, scoped.left_out)


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
        journal.status = ROLLED_BACK
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
