"""What each kind of plan step does, given the step context (kindfix/context.py): the table
STEPS maps every step kind to its action, BATCHED the kinds whose steps on one node go as one
batch (one journal save before, one after). The applier (kindfix/apply.py) only orders and
journals the steps; tests/unit/test_actions.py checks that every kind a plan can hold is here.
"""

from __future__ import annotations

from collections.abc import Callable

from kindfix import kubelet
from kindfix.addresses import by_family
from kindfix.audit import advertise_family
from kindfix.context import StepContext
from kindfix.errors import CommandError, KindfixError
from kindfix.journal import CHANGED, Verify, content_id, forget
from kindfix.loadbalancer import HAPROXY_CFG, lb_rewrites
from kindfix.loadbalancer_write import reload_haproxy, write_configs
from kindfix.node import RESTART_PODS, ContainerNode, run
from kindfix.observe import snapshot_node
from kindfix.patches import load_patches
from kindfix.plan import Step
from kindfix.recovery.strategy import repair as repair_etcd
from kindfix.x509 import parse_pem_certificates

KUBEADM_CONFIG = "/kind/kubeadm.conf"
# one kubeadm run per phase (kubeadm takes one), all of a node's phases in one exec
KUBEADM_CERTS = 'set -e; c=$1; shift; for p; do kubeadm init phase certs "$p" --config "$c"; done'
# journal key (and note) of the kubelet restart owed after a node's manifests were written
REFRESH = "kubelet-refresh"


class LaneFailed(Exception):
    """A node step failed (carried out of its lane to be reported with the others)."""

    def __init__(self, step: Step, cause: KindfixError) -> None:
        super().__init__(cause.message)
        self.step = step
        self.cause = cause


def _original(ctx: StepContext, step: Step) -> bytes | None:
    snap = ctx.snapshots.get(step.node)
    return snap.file(step.path) if snap else ctx.node(step.node).read_file(step.path)


def write_files(ctx: StepContext, steps: list[Step]) -> None:
    """Journal every original of the node at once, then one atomic write per file, each
    only over the content the plan was made from (compare and swap, in the node). The
    first refusal stops the node's writes; the files it never wrote leave the journal."""
    rec = ctx.recorder
    node = ctx.node(steps[0].node)
    originals = [(s.path, _original(ctx, s)) for s in steps]
    new = [s.path for s in steps if not rec.has_backup(node, s.path)]
    pods = [pod for pod in kubelet.manifest_pods([s.path for s in steps])
            if not (ctx.etcd_parks and pod == "etcd")]  # the etcd step restarts it (context.py)
    written = content_id(" ".join(s.key for s in steps).encode())[:12]
    refresh = f"{REFRESH}:{node.name}:{written}"
    if pods and not rec.is_done(refresh):
        # journaled before the first write: a run killed after it restarts the kubelet on
        # the next `kindfix repair`, whose plan no longer has these (written) files
        rec.add_note(f"{REFRESH}={refresh} {','.join(pods)}", once=True)
    rec.declare(node, originals)
    for k, (step, (_, original)) in enumerate(zip(steps, originals)):
        try:
            rec.replace_file(node, step.path, original, step.content)
        except CommandError as e:
            if e.exit_code in (CHANGED, 5):  # refused before anything changed
                forget(rec, node, [s.path for s in steps[k:] if s.path in new])
            raise LaneFailed(step, e) from e
    if pods and not rec.is_done(refresh):
        # before the next wave: the etcd preparation parks etcd.yaml from here on
        kubelet.refresh(node, pods, ctx.say)
        rec.mark_done(refresh)


def continue_refreshes(ctx: StepContext) -> None:
    """Kubelet restarts a killed run owed after writing manifests (see write_files)."""
    for note in list(ctx.recorder.journal.notes):
        if not note.startswith(REFRESH + "="):
            continue
        key, _, pods = note.partition("=")[2].partition(" ")
        name = key.split(":")[1]
        if not ctx.recorder.is_done(key) and name in ctx.nodes and pods:
            ctx.progress(f"continuing: the kubelet on {name} has not acted on its "
                         "changed manifests yet")
            kubelet.refresh(ctx.nodes[name], pods.split(","), ctx.say)
            ctx.recorder.mark_done(key)


def regen_certs(ctx: StepContext, steps: list[Step]) -> None:
    node = ctx.node(steps[0].node)
    current = node.read_files([p for s in steps for p in (s.path, s.key_path)])
    ctx.recorder.regenerate(
        node, [((s.path, current[s.path]), (s.key_path, current[s.key_path])) for s in steps],
        ["sh", "-c", KUBEADM_CERTS, "kindfix-certs", KUBEADM_CONFIG,
         *(s.phase for s in steps)], verify=_cert_verifier(ctx, steps))


def _cert_verifier(ctx: StepContext, steps: list[Step]) -> Verify:
    """The new certificates must parse and cover the address the node advertises."""
    cnode = ctx.cluster.node(steps[0].node)
    snap = ctx.snapshots.get(steps[0].node)
    wanted = None
    if cnode is not None:
        family = advertise_family(snap, cnode) if snap else (4 if cnode.ipv4 else 6)
        wanted = by_family(cnode.ipv4, cnode.ipv6).get(family)

    def verify(new: dict[str, bytes | None]) -> str | None:
        for step in steps:
            raw = new.get(step.path)
            if raw is None:
                return f"kubeadm made no {step.path}"
            try:
                cert = parse_pem_certificates(raw)[0]
            except KindfixError as e:
                return f"the new {step.path} does not parse ({e.message})"
            if wanted and not cert.covers_ip(wanted):
                return f"the new {step.path} does not cover {wanted}"
        return None
    return verify


def restart_pods(ctx: StepContext, steps: list[Step]) -> None:
    run(ctx.node(steps[0].node), ["sh", "-c", RESTART_PODS, "kindfix-restart",
                                  *(s.phase for s in steps)])


def restart_kubelet(ctx: StepContext, step: Step) -> None:
    run(ctx.node(step.node), ["systemctl", "restart", "kubelet"], timeout=60)


def etcd(ctx: StepContext, step: Step) -> None:
    repair_etcd(ctx, step.phase, step.content or None)


def start_lb(ctx: StepContext, step: Step) -> None:
    ctx.runtime.start(step.node)


def fix_lb(ctx: StepContext, _step: Step) -> None:
    lb = ctx.cluster.load_balancer
    assert lb is not None
    node = ctx.nodes.get(lb.name) or ContainerNode(ctx.runtime, lb.name, lb.role)
    snap = snapshot_node(node, load_patches())  # reads through the archive API if no sh
    write_configs(ctx.runtime, node, ctx.recorder, lb_rewrites(ctx.cluster, snap))
    if snap.file(HAPROXY_CFG) is not None:
        # always: a run killed after the rewrite but before the reload left it stale
        reload_haproxy(ctx.runtime, node)


Action = Callable[[StepContext, Step], None]
BatchAction = Callable[[StepContext, list[Step]], None]

# Keyed by the kind strings plan.py writes (StepKind members compare equal to them).
BATCHED: dict[str, BatchAction] = {
    "write-file": write_files,
    "regen-cert": regen_certs,
    "restart-pod": restart_pods,
}
STEPS: dict[str, Action] = {
    "write-file": lambda ctx, step: write_files(ctx, [step]),
    "regen-cert": lambda ctx, step: regen_certs(ctx, [step]),
    "restart-pod": lambda ctx, step: restart_pods(ctx, [step]),
    "restart-kubelet": restart_kubelet,
    "etcd": etcd,
    "start-lb": start_lb,
    "fix-lb": fix_lb,
}
