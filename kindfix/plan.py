"""Planning: a pure function from observations and their audit to the numbered steps of a repair.

Planning works from the audit's findings (which values, which certificates are stale); it does
not judge the files again. What restarts after a change is data too (`restart` in
patches/addresses.yaml).

Each step says what it will do in one line, with a redacted unified diff for file changes.
A healthy cluster yields an empty plan.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kindfix.audit import AuditReport, EtcdState
from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.findings import STALE
from kindfix.loadbalancer import lb_rewrites
from kindfix.observe import NodeSnapshot
from kindfix.patches import KUBELET, POD_PREFIX, Patches, load_patches, restart_pod
from kindfix.redact import redact
from kindfix.rewrite import FileChange, file_changes
from kindfix.steps import AUTO, REQUESTABLE, EtcdStrategy, StepKind

STRATEGIES = REQUESTABLE  # what --etcd-strategy accepts


def content_id(content: bytes | None) -> str:
    """Short content hash for step identities ("absent" for a missing file)."""
    return "absent" if content is None else hashlib.sha256(content).hexdigest()[:16]


def _ids_of(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    # Identity, used by the journal to skip finished work when a killed run is continued. It
    # names what the step changes (content hashes before>after, the certificate it replaces,
    # the changes a restart follows, the peer URLs etcd gets), so a file that is stale AGAIN
    # is a new step, never "already done" (issue #9).
    key: str
    kind: StepKind  # a plain string naming a kind is taken too (and checked)
    node: str
    summary: str
    diff: str = ""
    path: str = ""
    content: bytes = b""
    # what the kind works with: the kubeadm certs phase (regen-cert), the pod (restart-pod),
    # the EtcdStrategy (etcd). One field, as the journal's pending steps keep it ("phase").
    phase: str = ""
    key_path: str = ""

    # the new file content may hold keys (kubeconfig client-key-data): reports show the
    # redacted diff instead
    __render_exclude__ = ("content",)

    def __post_init__(self) -> None:
        # ValueError for a kind kindfix does not know; the members for the strings
        object.__setattr__(self, "kind", StepKind(self.kind))

    @property
    def strategy(self) -> EtcdStrategy:
        """The etcd strategy of an etcd step (NONE for any other step)."""
        return EtcdStrategy(self.phase) if self.kind == StepKind.ETCD else EtcdStrategy.NONE


@dataclass(frozen=True)
class Plan:
    cluster: str
    steps: tuple[Step, ...]
    etcd_strategy: EtcdStrategy  # NONE exactly when no step is an etcd step
    explanation: tuple[str, ...] = field(default_factory=tuple)
    scope: str = ""  # a scoped repair (scope.py): what it holds and what it left out

    def __post_init__(self) -> None:
        object.__setattr__(self, "etcd_strategy", EtcdStrategy(self.etcd_strategy))

    @property
    def empty(self) -> bool:
        return not self.steps


def unified_diff(change: FileChange) -> str:
    old = redact(change.old, change.path).decode(errors="replace").splitlines(keepends=True)
    new = redact(change.new, change.path).decode(errors="replace").splitlines(keepends=True)
    where = f"{change.node}:{change.path}"
    return "".join(difflib.unified_diff(old, new, f"a/{where}", f"b/{where}"))


def _file_steps(changes: list[FileChange]) -> list[Step]:
    return [Step(f"file:{c.node}:{c.path}:{content_id(c.old)}>{content_id(c.new)}",
                 StepKind.WRITE_FILE, c.node,
                 f"rewrite {c.path} ({', '.join(c.locations)})", unified_diff(c), c.path, c.new)
            for c in changes]


def _cert_steps(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot], report: AuditReport,
                patches: Patches) -> list[Step]:
    """A new certificate wherever audit found one that does not cover its node (or missing)."""
    stale = {(f.node, f.source) for f in report.findings if f.status == STALE}
    steps = []
    for node in cluster.control_planes:
        snap = snapshots.get(node.name)
        if snap is None:
            continue
        for spec in patches.certificates_for(node.role):
            if (node.name, f"{spec.file}#SAN") in stale:
                steps.append(Step(
                    f"cert:{node.name}:{spec.phase}:{content_id(snap.file(spec.file))}>"
                    f"{','.join(node.ips())}",
                    StepKind.REGEN_CERT, node.name,
                    f"regenerate {spec.file} for {', '.join(node.ips())} "
                    f"(kubeadm init phase certs {spec.phase})",
                    path=spec.file, phase=spec.phase,
                    key_path=spec.file[: -len(".crt")] + ".key"))
    return steps


def etcd_work(report: AuditReport, certs: Iterable[Step] = ()) -> bool:
    """kindfix operates on etcd only on evidence: a stale etcd address or certificate in the
    files (or a certificate the plan regenerates), a stale peer URL in the member list, or a
    lost quorum (evidence-backed, or confirmed by the start-up wait: settle.py). A member
    that has not answered yet is unknown, and unknown is never lost (issue #10)."""
    state = report.etcd
    return bool(state.evidence) or state.quorum is False or any(
        c.phase.startswith("etcd") for c in certs)


def _why_no_etcd_work(state: EtcdState) -> str:
    if state.quorum is None and state.size:
        waited = f" within {state.waited:.0f} s" if state.waited else ""
        return (f"etcd has not shown a leader{waited} ({state.silent} of {state.size} members "
                "silent), and no file shows a stale etcd address: left alone (unknown is not "
                "lost); rerun once it runs")
    return "etcd membership and certificates are current"


def choose_etcd_strategy(report: AuditReport, requested: str, etcd_work: bool
                         ) -> tuple[EtcdStrategy, str]:
    """(strategy, why) from what the members said; `requested` is one of STRATEGIES."""
    if requested not in STRATEGIES:
        raise KindfixError(f"etcd strategy {requested!r}: not one kindfix knows",
                           hint=f"one of {', '.join(STRATEGIES)}")
    state = report.etcd
    if not etcd_work:
        return EtcdStrategy.NONE, _why_no_etcd_work(state)
    if requested != AUTO:
        return EtcdStrategy(requested), f"--etcd-strategy {requested} requested"
    if state.quorum:
        return EtcdStrategy.MEMBER_UPDATE, (
            "quorum intact: update each stale member's peer URL through the cluster, one "
            "member at a time")
    if state.quorum is None and len(state.moved) > state.size // 2:
        # Their peers dial the old addresses (wrong member, or none; kind#1689): a majority
        # that moved cannot be counted on to elect a leader, and member-update needs one.
        return EtcdStrategy.SNAPSHOT_RESTORE, (
            f"{len(state.moved)} of {state.size} members moved (stale etcd certificates or "
            "addresses) and etcd is not answering yet: restore the most up-to-date member's "
            "data onto all of them with their current peer URLs; etcd gets a new cluster ID "
            "(--etcd-strategy force-new-cluster keeps WAL-only writes, slower)")
    if state.quorum is False:
        return EtcdStrategy.SNAPSHOT_RESTORE, (
            "quorum lost: stop every member, copy every data dir, restore the most up-to-date "
            "member's data (highest revision) onto all of them with their current peer URLs and "
            "start them one by one; etcd gets a new cluster ID. Writes that only reached a "
            "member's WAL (an unclean stop in the last ~100 ms) are not in that data: "
            "--etcd-strategy force-new-cluster keeps them, member by member and slower")
    return EtcdStrategy.DECIDE, ("etcd is not answering yet: after the manifests are fixed, use "
                      "member-update if a leader appears, else snapshot-restore")


def restart_steps(files: list[Step], certs: list[Step], patches: Patches | None = None
                  ) -> list[Step]:
    """Restarts of what reads a changed file only at start, as patches/addresses.yaml says
    (`restart`): one per node and pod, then one kubelet restart per node. Each restart's
    identity names the changes it follows, so a later change of the same file asks for a new
    restart."""
    patches = patches or load_patches()
    causes: dict[tuple[str, str], list[str]] = {}
    for s in files + certs:
        causes.setdefault((s.node, s.path), []).append(s.key)
    pods: dict[tuple[str, str], tuple[list[str], list[str]]] = {}  # (node, pod): paths, keys
    kubelets: dict[str, tuple[list[str], list[str]]] = {}  # node: paths, keys
    for (node, path), keys in sorted(causes.items()):
        for rule in patches.restarts_for(path):
            pod = restart_pod(rule)
            paths, ids = pods.setdefault((node, pod), ([], [])) if pod else \
                kubelets.setdefault(node, ([], []))
            paths.append(path)
            ids += keys
    steps = [Step(f"restart:{node}:{pod}:{_ids_of(keys)}", StepKind.RESTART_POD, node,
                  f"restart {pod} (it reads {', '.join(paths)} only at start)", phase=pod)
             for (node, pod), (paths, keys) in pods.items()]
    steps += [Step(f"kubelet:{node}:{_ids_of(keys)}", StepKind.RESTART_KUBELET, node,
                   f"restart the kubelet (it reads {', '.join(paths)} only at start)")
              for node, (paths, keys) in sorted(kubelets.items())]
    return steps


def restart_follows(restart: Step, cause: Step, patches: Patches | None = None) -> bool:
    """Whether `restart` is one that the changed file or certificate `cause` asks for
    (restart_steps' rule, for a scoped repair that keeps the change)."""
    if restart.node != cause.node or not cause.path:
        return False
    rules = (patches or load_patches()).restarts_for(cause.path)
    if restart.kind == StepKind.RESTART_POD:
        return f"{POD_PREFIX}{restart.phase}" in rules
    return restart.kind == StepKind.RESTART_KUBELET and KUBELET in rules


def etcd_target(cluster: Cluster) -> str:
    """What an etcd step establishes: every member at its node's current addresses."""
    return _ids_of(f"{n.name}={','.join(n.ips())}" for n in cluster.control_planes)


def _lb_steps(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot]) -> list[Step]:
    lb = cluster.load_balancer
    if lb is None:
        return []
    steps = []
    if not lb.running:
        steps.append(Step("lb:start", StepKind.START_LB, lb.name,
                          f"start the load balancer container {lb.name} (it is {lb.state})"))
    rewrites = lb_rewrites(cluster, snapshots.get(lb.name))
    if not lb.running or rewrites:
        diff = "".join(unified_diff(FileChange(lb.name, path, old, new, ()))
                       for path, (old, new) in rewrites.items())
        what = ", ".join(rewrites) if rewrites else "its backends once it runs"
        steps.append(Step(f"lb:config:{_ids_of([lb.state, diff])}", StepKind.FIX_LB, lb.name,
                          f"fix the load balancer's config ({what}) and reload it", diff))
    return steps


def make_plan(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot], report: AuditReport,
              etcd_strategy: str = AUTO, patches: Patches | None = None) -> Plan:
    """The repair of what `report` (the audit of these very snapshots, with the same patches)
    found stale."""
    patches = patches or load_patches()
    changes: list[FileChange] = []
    for node in cluster.kube_nodes:
        snap = snapshots.get(node.name)
        if snap is not None:
            changes += file_changes(snap, node, cluster, patches, report.findings)
    certs = _cert_steps(cluster, snapshots, report, patches)
    strategy, why = choose_etcd_strategy(report, etcd_strategy, etcd_work(report, certs))
    # restarts before etcd: a restarted apiserver waits for etcd, and comes up with it
    files = _file_steps(changes)
    steps = files + certs + restart_steps(files, certs, patches)
    if strategy != EtcdStrategy.NONE:
        steps.append(Step(f"etcd:{etcd_target(cluster)}", StepKind.ETCD,
                          cluster.control_planes[0].name,
                          f"etcd membership: {strategy} ({why})", phase=strategy))
    steps += _lb_steps(cluster, snapshots)
    return Plan(cluster.name, tuple(steps), strategy, (why,))
