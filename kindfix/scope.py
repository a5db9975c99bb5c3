"""Scoped repairs (`kindfix repair --only ... --node ...`): the plan cut down to what was asked
for, plus what those steps strictly depend on (said in the plan), and refused with one line
where a part alone would leave the cluster worse than it is.

Pure: a Plan in, a Plan out.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.plan import Plan, Step, restart_follows
from kindfix.steps import EtcdStrategy, StepKind

ETCD_MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
ETCD_CERTS = ("etcd-server", "etcd-peer")  # kubeadm cert phases whose SANs etcd peers check

# what --only accepts, and what each part holds
PARTS = {
    "kubeconfigs": "the kubeconfigs in /etc/kubernetes (*.conf)",
    "manifests": "the static pod manifests",
    "config": "kind's /kind/kubeadm.conf and the kubelet's kubeadm-flags.env",
    "certs": "certificates whose SANs do not cover the node",
    "etcd": "etcd membership (peer URLs, or a restore when quorum is lost)",
    "lb": "the external load balancer (start it, fix its backends)",
    "restarts": "restarts of the pods and kubelets that read a changed file",
}


# the part of a repair each kind of step is (file writes: by path, see part_of)
KIND_PART = {StepKind.REGEN_CERT: "certs", StepKind.ETCD: "etcd", StepKind.START_LB: "lb",
             StepKind.FIX_LB: "lb", StepKind.RESTART_POD: "restarts",
             StepKind.RESTART_KUBELET: "restarts"}


def part_of(step: Step) -> str:
    if step.kind == StepKind.WRITE_FILE:
        if step.path.startswith("/etc/kubernetes/manifests/"):
            return "manifests"
        if step.path.startswith("/etc/kubernetes/") and step.path.endswith(".conf"):
            return "kubeconfigs"
        return "config"
    return KIND_PART[step.kind]


def _etcd_cert(step: Step) -> bool:
    return step.kind == StepKind.REGEN_CERT and step.phase in ETCD_CERTS


@dataclass(frozen=True)
class Scoped:
    plan: Plan
    left_out: tuple[str, ...]  # summaries of the steps not in scope
    added: tuple[str, ...]  # why steps outside the asked parts are in (dependencies)


def scope_plan(plan: Plan, cluster: Cluster, only: Collection[str] = (),
               nodes: Collection[str] = ()) -> Scoped:
    unknown_parts = sorted(set(only) - set(PARTS))
    if unknown_parts:
        raise KindfixError(f"--only {', '.join(unknown_parts)}: not a part of a repair",
                           hint=f"one of {', '.join(PARTS)}")
    names = {n.name for n in cluster.nodes}
    unknown_nodes = sorted(set(nodes) - names)
    if unknown_nodes:
        raise KindfixError(f"--node {', '.join(unknown_nodes)}: not a node of cluster "
                           f"{cluster.name}", hint="list them with `kindfix nodes`")
    if not only and not nodes:
        return Scoped(plan, (), ())
    parts = set(only) or set(PARTS)
    on_nodes = set(nodes) or names
    cps = {cp.name for cp in cluster.control_planes}
    etcd_step = next((s for s in plan.steps if s.kind == StepKind.ETCD), None)
    if etcd_step is not None and "etcd" in parts and nodes and not cps <= on_nodes:
        raise KindfixError(f"etcd membership ({plan.etcd_strategy}) is repaired for every member "
                           f"at once; --node leaves out {', '.join(sorted(cps - on_nodes))}",
                           hint="drop --node, or leave etcd out with --only")

    def asked(step: Step) -> bool:
        node_ok = step.kind == StepKind.ETCD or step.node in on_nodes
        return node_ok and part_of(step) in parts

    keep = {s.key for s in plan.steps if asked(s)}
    added: list[str] = []

    needed: dict[str, str] = {}

    def need(step: Step, why: str) -> None:
        if step.key not in keep:
            keep.add(step.key)
            needed[step.key] = why
            added.append(f"{step.summary} ({why})")

    if etcd_step is not None and etcd_step.key in keep:
        # etcd's new peer URLs need the manifests that advertise them and certificates for them
        for s in plan.steps:
            if (s.kind == StepKind.WRITE_FILE and s.path == ETCD_MANIFEST) or _etcd_cert(s):
                need(s, "etcd membership needs it")
    picked_etcd_certs = [s for s in plan.steps if s.key in keep and _etcd_cert(s)]
    if picked_etcd_certs and etcd_step is not None and etcd_step.key not in keep:
        where = ", ".join(sorted({s.node for s in picked_etcd_certs}))
        raise KindfixError(f"new etcd certificates on {where} without the etcd membership "
                           "repair would cut those members off from their peers (peers dial "
                           "the old addresses)", hint="add --only etcd, or leave certs out")
    for s in plan.steps:  # what reads a changed file only at start must restart to see it
        if s.kind in (StepKind.RESTART_POD, StepKind.RESTART_KUBELET) and s.key not in keep and any(
                restart_follows(s, c) for c in plan.steps if c.key in keep):
            need(s, "the change above is read only at start")
    steps = tuple(replace(s, summary=f"{s.summary} [not asked for: {needed[s.key]}]")
                  if s.key in needed else s for s in plan.steps if s.key in keep)
    left = tuple(f"[{s.node}] {s.summary}" for s in plan.steps if s.key not in keep)
    strategy = plan.etcd_strategy if any(s.kind == StepKind.ETCD for s in steps) \
        else EtcdStrategy.NONE
    what = ", ".join(sorted(parts)) if only else "every part"
    where = f" on {', '.join(sorted(on_nodes))}" if nodes else ""
    scope = f"{what}{where}: {len(steps)} of {len(plan.steps)} steps, {len(left)} left out"
    return Scoped(replace(plan, steps=steps, etcd_strategy=strategy, scope=scope), left,
                  tuple(added))
