"""Continuing a repair that was killed or interrupted (issue #9): what its journal still owes,
and what the observation must be told about the state it left the cluster in.

Pure: a plan, a journal and what was read from the nodes in; a plan, the journal's pending list,
snapshots and an audit report out. api.prepare_repair and apply_and_verify are the glue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from kindfix.audit import AuditReport
from kindfix.journal import Journal, PendingStep
from kindfix.observe import NodeSnapshot
from kindfix.patches import CONTROL_PLANE
from kindfix.plan import Plan, Step
from kindfix.recovery import manifest as etcd_manifest
from kindfix.steps import StepKind

# etcd's manifest, and where a recovery parks it while etcd is stopped (recovery/manifest.py)
MANIFEST = etcd_manifest.MANIFEST
PARKED = etcd_manifest.PARKED

# Steps whose effect no file shows: the journal keeps them pending until they are done, so a
# continued run does them even when the files already look repaired. In the order they run.
UNOBSERVABLE: tuple[StepKind, ...] = (StepKind.ETCD, StepKind.RESTART_POD,
                                      StepKind.RESTART_KUBELET, StepKind.START_LB,
                                      StepKind.FIX_LB)


def same_work(kind: str, node: str, phase: str) -> tuple[str, ...]:
    """What makes two unobservable steps the same work whatever their identity: one etcd
    repair, one load balancer fix, one restart of a pod (or kubelet) per node."""
    if kind in (StepKind.ETCD, StepKind.START_LB, StepKind.FIX_LB):
        return (kind,)
    return (kind, node, phase)


def remember_pending(journal: Journal, plan: Plan) -> None:
    """Journal the plan's unobservable steps; one the plan supersedes (the same work planned
    from a newer observation, see with_unfinished_steps) is dropped, so it never comes back."""
    planned = {same_work(s.kind, s.node, s.phase): s.key for s in plan.steps
               if s.kind in UNOBSERVABLE}
    journal.pending = [p for p in journal.pending if p.key in journal.done
                       or planned.get(same_work(p.kind, p.node, p.phase), p.key) == p.key]
    known = {p.key for p in journal.pending}
    journal.pending += [PendingStep(s.key, s.kind, s.node, s.summary, s.phase)
                        for s in plan.steps if s.kind in UNOBSERVABLE and s.key not in known]


def with_unfinished_steps(plan: Plan, journal: Journal) -> Plan:
    """Steps a killed run planned but did not finish, whose effect the files do not show. The
    plan's own step wins over a pending one for the same work (a newer identity: it was
    planned from what the cluster shows now)."""
    have = {same_work(s.kind, s.node, s.phase) for s in plan.steps}
    extra = [Step(p.key, p.kind, p.node, f"{p.summary} (unfinished in run {journal.run_id})",
                  phase=p.phase)
             for p in journal.pending if p.key not in journal.done
             and same_work(p.kind, p.node, p.phase) not in have]
    if not extra:
        return plan
    order = {kind: i for i, kind in enumerate(UNOBSERVABLE)}
    steps = [s for s in plan.steps if s.kind not in UNOBSERVABLE]
    rest = sorted([s for s in plan.steps if s.kind in UNOBSERVABLE] + extra,
                  key=lambda s: order[s.kind])
    strategy = next((s.strategy for s in rest if s.kind == StepKind.ETCD), plan.etcd_strategy)
    return replace(plan, steps=(*steps, *rest), etcd_strategy=strategy)


def pending_etcd(journal: Journal | None) -> bool:
    """A continued run still owes its etcd repair (then nothing waits for etcd to start)."""
    return journal is not None and any(
        p.kind == StepKind.ETCD and p.key not in journal.done for p in journal.pending)


def parked_manifests_wanted(snapshots: Mapping[str, NodeSnapshot]) -> list[str]:
    """The nodes whose etcd manifest is missing: where a killed run may have parked it."""
    return [name for name, snap in snapshots.items()
            if snap.role == CONTROL_PLANE and snap.file(MANIFEST) is None]


def with_parked_etcd(snapshots: Mapping[str, NodeSnapshot], parked: Mapping[str, bytes | None]
                     ) -> tuple[dict[str, NodeSnapshot], tuple[str, ...]]:
    """A run killed mid-recovery leaves etcd.yaml parked: read it where audit expects it.
    `parked` holds what each node has at PARKED (None: nothing). Also returns the nodes where
    it was parked."""
    out = dict(snapshots)
    parked_on = []
    for name in parked_manifests_wanted(snapshots):
        content = parked.get(name)
        if content is not None:
            snap = snapshots[name]
            out[name] = replace(snap, files={**snap.files, MANIFEST: content})
            parked_on.append(name)
    return out, tuple(parked_on)


def parked_is_evidence(report: AuditReport, parked_on: tuple[str, ...]) -> AuditReport:
    """etcd stopped by kindfix itself (an unfinished recovery) is evidence, not "starting"."""
    if not parked_on:
        return report
    evidence = tuple(f"{n}:{PARKED} (etcd parked by an unfinished repair)" for n in parked_on)
    return replace(report, etcd=replace(report.etcd, evidence=report.etcd.evidence + evidence))
