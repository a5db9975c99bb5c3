"""Applying a plan: every step backs up what it changes first and is journaled, so a run that is
killed at any point is continued by the next `kindfix repair`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from kindfix import backoff, etcd_recovery, kubelet
from kindfix import lanes as lanes_mod
from kindfix.addresses import by_family
from kindfix.audit import advertise_family
from kindfix.discovery import Cluster
from kindfix.errors import CommandError, KindfixError
from kindfix.journal import CHANGED, RunRecorder, Verify, content_id, forget
from kindfix.loadbalancer import HAPROXY_CFG, lb_rewrites, reload_haproxy, write_configs
from kindfix.node import RESTART_PODS, ContainerNode, Node, run
from kindfix.observe import NodeSnapshot, snapshot_node
from kindfix.patches import load_patches
from kindfix.plan import Plan, Step
from kindfix.runtime import Runtime
from kindfix.x509 import parse_pem_certificates

Progress = Callable[[str], None]

KUBEADM_CONFIG = "/kind/kubeadm.conf"
# one kubeadm run per phase (kubeadm takes one), all of a node's phases in one exec
KUBEADM_CERTS = 'set -e; c=$1; shift; for p; do kubeadm init phase certs "$p" --config "$c"; done'
# journal key (and note) of the kubelet restart owed after a node's manifests were written
REFRESH = "kubelet-refresh"
# Per-node steps of one kind that go as one batch (the method takes the node's list)
BATCHED = {"write-file": "_write_files", "regen-cert": "_regen_certs",
           "restart-pod": "_restart_pods"}


class StepsFailed(KindfixError):
    """Node steps of one wave that failed, every one named by node and file."""

    def __init__(self, failures: list[tuple[Step, KindfixError]], notes: list[str]) -> None:
        self.failures = failures
        said = [f"{_what(step)} failed: {_cause(err, step)}" for step, err in failures]
        head = said[0] if len(said) == 1 else f"{len(said)} node steps failed: " + \
            "; ".join(said)
        changed = any(getattr(err, "exit_code", None) == CHANGED for _, err in failures)
        own = failures[0][1].hint if len(failures) == 1 else None
        hint = own or (
            "a file changed since it was read (kind's entrypoint rewrites files while a node "
            "boots): run `kindfix repair` again, it plans from what is there now" if changed else
            "every changed file has a backup; fix the cause and run `kindfix repair` again to "
            "finish the job (or `kindfix rollback` to undo it)")
        super().__init__("; ".join([head, *notes]), hint=hint)


def _what(step: Step) -> str:
    verb = {"write-file": "writing", "regen-cert": "regenerating"}.get(step.kind)
    if verb and step.path:
        return f"{step.node}: {verb} {step.path}"
    if step.kind == "etcd":  # its summary carries the whole explanation of the strategy
        return f"etcd membership ({step.phase})"
    if step.kind == "restart-pod":
        return f"{step.node}: restarting {step.phase}"
    return f"{step.node}: {step.summary}"


def _cause(err: KindfixError, step: Step) -> str:
    """The part of an error that says why, without the command's script; names the node the
    command failed on when that is not the step's own (the etcd step runs on every member)."""
    if isinstance(err, CommandError):
        # the last line that says something (kubeadm ends every error with a --v=5 advice)
        lines = [ln.strip() for ln in err.stderr.decode(errors="replace").splitlines()
                 if ln.strip() and not ln.startswith("To see the stack trace")]
        # node steps name their node already; the etcd step's line names none
        named = step.kind != "etcd" and err.where == step.node
        where = f"on {err.where}: " if err.where and not named else ""
        return f"{where}exit {err.exit_code}" + (f": {lines[-1]}" if lines else "")
    return err.message


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
        self.stopping = threading.Event()  # set on failure or Ctrl-C: start nothing new

    def apply(self, plan: Plan) -> list[str]:
        """Steps in plan order; a run of per-node steps (files, certificates, restarts) goes
        node by node in plan order, all nodes at once. A snapshot restore of etcd prepares
        (stop, copy, restore beside the data) while the certificates are made: it needs the
        rewritten manifests, not the new certificates. Nothing of it is destructive: when a
        wave fails the preparation is stopped and undone (etcd starts again on its own data)."""
        numbered = list(enumerate(plan.steps, 1))
        done: list[str] = []
        self._continue_refreshes()
        etcd_step = next((s for s in plan.steps if s.kind == "etcd"), None)
        prepare = etcd_step is not None and not self.recorder.is_done(etcd_step.key) and \
            etcd_step.phase == "snapshot-restore"
        preparing: etcd_recovery.Preparation | None = None
        try:
            for wave in _waves(numbered):
                kind = wave[0][1].kind
                if prepare and preparing is None and kind != "write-file":
                    preparing = etcd_recovery.Preparation(self)
                    preparing.start()
                if kind == "etcd" and preparing is not None:
                    preparing.join()
                    preparing = None  # its work is the etcd step's from here on
                done += self._run_wave(wave, len(plan.steps))
            if preparing is not None:
                preparing.join()
        except KeyboardInterrupt:
            self.stopping.set()
            if preparing is not None:
                preparing.cancel()
                self.progress("interrupted: the etcd preparation stops after its current "
                              "command (the next `kindfix repair` continues it)")
            raise
        except KindfixError as e:
            self.stopping.set()
            if preparing is None:
                raise
            notes = preparing.undo()
            if isinstance(e, StepsFailed):
                raise StepsFailed(e.failures, notes) from None
            raise KindfixError("; ".join([e.message, *notes]), hint=e.hint) from None
        except BaseException:  # a bug: stop what runs beside, report it as it is
            self.stopping.set()
            if preparing is not None:
                preparing.cancel()
            raise
        backoff.clear(self.cluster, self.nodes, self.progress)  # kubelet back-off: issue #10
        return done

    def _run_wave(self, wave: list[tuple[int, Step]], total: int) -> list[str]:
        lanes: dict[str, list[tuple[int, Step]]] = {}
        for item in wave:
            lanes.setdefault(item[1].node, []).append(item)  # one lane per node

        def interrupted(flying: list[list[tuple[int, Step]]]) -> None:
            steps = [step for items in flying for _, step in items
                     if not self.recorder.is_done(step.key)]
            if steps:
                self.progress("interrupted; in flight, finishing on their nodes without "
                              "waiting: " + "; ".join(_what(s) for s in steps))

        outcomes = lanes_mod.run_all(lambda items: self._run_steps(items, total),
                                     list(lanes.values()), on_interrupt=interrupted,
                                     stop=self.stopping)
        done: list[str] = []
        failures: list[tuple[Step, KindfixError]] = []
        for o in outcomes:
            if o.error is None:
                done += o.result or []
            elif isinstance(o.error, LaneFailed):
                failures.append((o.error.step, o.error.cause))
            else:
                raise o.error  # a bug (exit 3 with its traceback), or Ctrl-C
        if failures:
            raise StepsFailed(failures, [])
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
            try:
                getattr(self, BATCHED[steps[0].kind])(steps)
            except LaneFailed:
                raise
            except KindfixError as e:
                raise LaneFailed(steps[0], e) from e
            self.recorder.mark_done(*(step.key for step in steps))
            return [step.key for step in steps]
        done = []
        for i, step in todo:
            if self.stopping.is_set():
                break  # another node's step failed, or Ctrl-C: start nothing new
            self.progress(f"[{i}/{total}] [{step.node}] {step.summary}")
            try:
                getattr(self, "_" + step.kind.replace("-", "_"))(step)
            except LaneFailed:
                raise
            except KindfixError as e:
                raise LaneFailed(step, e) from e
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
        """Journal every original of the node at once, then one atomic write per file, each
        only over the content the plan was made from (compare and swap, in the node). The
        first refusal stops the node's writes; the files it never wrote leave the journal."""
        node = self._node(steps[0].node)
        originals = [(s.path, self._original(s)) for s in steps]
        new = [s.path for s in steps if not self.recorder.has_backup(node, s.path)]
        pods = kubelet.manifest_pods([s.path for s in steps])
        written = content_id(" ".join(s.key for s in steps).encode())[:12]
        refresh = f"{REFRESH}:{node.name}:{written}"
        if pods and not self.recorder.is_done(refresh):
            # journaled before the first write: a run killed after it restarts the kubelet on
            # the next `kindfix repair`, whose plan no longer has these (written) files
            self.recorder.add_note(f"{REFRESH}={refresh} {','.join(pods)}", once=True)
        self.recorder.declare(node, originals)
        for k, (step, (_, original)) in enumerate(zip(steps, originals)):
            try:
                self.recorder.replace_file(node, step.path, original, step.content)
            except CommandError as e:
                if e.exit_code in (CHANGED, 5):  # refused before anything changed
                    forget(self.recorder, node, [s.path for s in steps[k:] if s.path in new])
                raise LaneFailed(step, e) from e
        if pods and not self.recorder.is_done(refresh):
            # before the next wave: the etcd preparation parks etcd.yaml from here on
            kubelet.refresh(node, pods, self._say)
            self.recorder.mark_done(refresh)

    def _say(self, text: str) -> None:
        self.progress(f"      {text}")

    def _continue_refreshes(self) -> None:
        """Kubelet restarts a killed run owed after writing manifests (see _write_files)."""
        for note in list(self.recorder.journal.notes):
            if not note.startswith(REFRESH + "="):
                continue
            key, _, pods = note.partition("=")[2].partition(" ")
            name = key.split(":")[1]
            if not self.recorder.is_done(key) and name in self.nodes and pods:
                self.progress(f"continuing: the kubelet on {name} has not acted on its "
                              "changed manifests yet")
                kubelet.refresh(self.nodes[name], pods.split(","), self._say)
                self.recorder.mark_done(key)

    def _regen_certs(self, steps: list[Step]) -> None:
        node = self._node(steps[0].node)
        current = node.read_files([p for s in steps for p in (s.path, s.key_path)])
        self.recorder.regenerate(
            node, [((s.path, current[s.path]), (s.key_path, current[s.key_path])) for s in steps],
            ["sh", "-c", KUBEADM_CERTS, "kindfix-certs", KUBEADM_CONFIG,
             *(s.phase for s in steps)], verify=self._cert_verifier(steps))

    def _cert_verifier(self, steps: list[Step]) -> Verify:
        """The new certificates must parse and cover the address the node advertises."""
        cnode = self.cluster.node(steps[0].node)
        snap = self.snapshots.get(steps[0].node)
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

    def _etcd(self, step: Step) -> None:
        etcd_recovery.repair(self, step.phase, step.content or None)

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


class LaneFailed(Exception):
    """A node step failed (carried out of its lane to be reported with the others)."""

    def __init__(self, step: Step, cause: KindfixError) -> None:
        super().__init__(cause.message)
        self.step = step
        self.cause = cause


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

