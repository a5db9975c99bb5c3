"""Applying a plan: every step backs up what it changes first and is journaled, so a run that is
killed at any point is continued by the next `kindfix repair`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from kindfix import backoff, etcd_recovery
from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.journal import RunRecorder
from kindfix.loadbalancer import HAPROXY_CFG, lb_rewrites, reload_haproxy, write_configs
from kindfix.node import RESTART_PODS, ContainerNode, Node, run
from kindfix.observe import NodeSnapshot, snapshot_node
from kindfix.patches import load_patches
from kindfix.plan import Plan, Step
from kindfix.runtime import Runtime

Progress = Callable[[str], None]

KUBEADM_CONFIG = "/kind/kubeadm.conf"
# one kubeadm run per phase (kubeadm takes one), all of a node's phases in one exec
KUBEADM_CERTS = 'set -e; c=$1; shift; for p; do kubeadm init phase certs "$p" --config "$c"; done'
# Per-node steps of one kind that go as one batch (the method takes the node's list)
BATCHED = {"write-file": "_write_files", "regen-cert": "_regen_certs",
           "restart-pod": "_restart_pods"}


class Applier:
    def __init__(self, runtime: Runtime, cluster: Cluster, nodes: Mapping[str, Node],
                 snapshots: Mapping[str, NodeSnapshot], recorder: RunRecorder,
                 progress: Progress) -> None:
        self.runtime = runtime
        self.cluster = cluster
        self.nodes = nodes
        self.snapshots = snapshots
        self.recorder = recorder
        self.progress = progress

    def apply(self, plan: Plan) -> list[str]:
        """Steps in plan order; a run of per-node steps (files, certificates, restarts) goes
        node by node in plan order, all nodes at once. A snapshot restore of etcd prepares
        (stop, copy, restore) while the certificates are made: it needs the rewritten
        manifests, not the new certificates."""
        numbered = list(enumerate(plan.steps, 1))
        done: list[str] = []
        etcd_step = next((s for s in plan.steps if s.kind == "etcd"), None)
        prepare = etcd_step is not None and not self.recorder.is_done(etcd_step.key) and \
            etcd_step.phase == "snapshot-restore"
        with ThreadPoolExecutor(max_workers=1) as background:
            preparing: Future[None] | None = None
            for wave in _waves(numbered):
                kind = wave[0][1].kind
                if prepare and preparing is None and kind != "write-file":
                    preparing = background.submit(etcd_recovery.prepare, self)
                if kind == "etcd" and preparing is not None:
                    preparing.result()
                done += self._run_wave(wave, len(plan.steps))
            if preparing is not None:
                preparing.result()
        backoff.clear(self.cluster, self.nodes, self.progress)  # kubelet back-off: issue #10
        return done

    def _run_wave(self, wave: list[tuple[int, Step]], total: int) -> list[str]:
        lanes: dict[str, list[tuple[int, Step]]] = {}
        for item in wave:
            lanes.setdefault(item[1].node, []).append(item)  # one lane per node
        if len(lanes) == 1:
            return self._run_steps(wave, total)
        done: list[str] = []
        with ThreadPoolExecutor(max_workers=min(8, len(lanes))) as pool:
            futures = [pool.submit(self._run_steps, items, total) for items in lanes.values()]
            for f in futures:
                done += f.result()
        return done

    def _run_steps(self, items: list[tuple[int, Step]], total: int) -> list[str]:
        todo = []
        for i, step in items:
            if self.recorder.is_done(step.key):
                self.progress(f"[{i}/{total}] already done: {step.summary}")
            else:
                todo.append((i, step))
        kinds = {step.kind for _, step in todo}
        if len(kinds) == 1 and kinds <= set(BATCHED):
            # a node's steps of one kind together: one journal save before, one after
            for i, step in todo:
                self.progress(f"[{i}/{total}] [{step.node}] {step.summary}")
            steps = [step for _, step in todo]
            getattr(self, BATCHED[steps[0].kind])(steps)
            self.recorder.mark_done(*(step.key for step in steps))
            return [step.key for step in steps]
        done = []
        for i, step in todo:
            self.progress(f"[{i}/{total}] [{step.node}] {step.summary}")
            getattr(self, "_" + step.kind.replace("-", "_"))(step)
            self.recorder.mark_done(step.key)
            done.append(step.key)
        return done

    def _node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KindfixError(f"node {name} is not part of cluster {self.cluster.name}") from None

    def _original(self, step: Step) -> bytes | None:
        snap = self.snapshots.get(step.node)
        return snap.file(step.path) if snap else self._node(step.node).read_file(step.path)

    def _write_file(self, step: Step) -> None:
        self._write_files([step])

    def _write_files(self, steps: list[Step]) -> None:
        """Journal every original of the node at once, then one atomic write per file."""
        node = self._node(steps[0].node)
        originals = [(s.path, self._original(s)) for s in steps]
        self.recorder.declare(node, originals)
        for step, (_, original) in zip(steps, originals):
            self.recorder.replace_file(node, step.path, original, step.content)

    def _regen_certs(self, steps: list[Step]) -> None:
        node = self._node(steps[0].node)
        current = node.read_files([p for s in steps for p in (s.path, s.key_path)])
        self.recorder.regenerate(
            node, [((s.path, current[s.path]), (s.key_path, current[s.key_path])) for s in steps],
            ["sh", "-c", KUBEADM_CERTS, "kindfix-certs", KUBEADM_CONFIG,
             *(s.phase for s in steps)])

    def _etcd(self, step: Step) -> None:
        etcd_recovery.repair(self, step.phase)

    def _restart_pod(self, step: Step) -> None:
        self._restart_pods([step])

    def _restart_pods(self, steps: list[Step]) -> None:
        run(self._node(steps[0].node), ["sh", "-c", RESTART_PODS, "kindfix-restart",
                                        *(s.phase for s in steps)])

    def _restart_kubelet(self, step: Step) -> None:
        run(self._node(step.node), ["systemctl", "restart", "kubelet"], timeout=60)

    def _start_lb(self, step: Step) -> None:
        self.runtime.start(step.node)

    def _fix_lb(self, step: Step) -> None:
        lb = self.cluster.load_balancer
        assert lb is not None
        node = self.nodes.get(lb.name) or ContainerNode(self.runtime, lb.name, lb.role)
        snap = snapshot_node(node, load_patches())  # reads through the archive API if no sh
        write_configs(self.runtime, node, self.recorder, lb_rewrites(self.cluster, snap))
        if snap.file(HAPROXY_CFG) is not None:
            # always: a run killed after the rewrite but before the reload left it stale
            reload_haproxy(self.runtime, node)


PER_NODE = ("write-file", "regen-cert", "restart-pod", "restart-kubelet")


def _waves(numbered: list[tuple[int, Step]]) -> list[list[tuple[int, Step]]]:
    """Consecutive per-node steps of one kind form a wave (files before certificates: kubeadm
    reads the rewritten /kind/kubeadm.conf); every other step is a wave of its own."""
    waves: list[list[tuple[int, Step]]] = []
    for item in numbered:
        if waves and item[1].kind in PER_NODE and waves[-1][-1][1].kind == item[1].kind:
            waves[-1].append(item)
        else:
            waves.append([item])
    return waves

