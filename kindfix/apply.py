"""Applying a plan: every step backs up what it changes first and is journaled, so a run that is
killed at any point is continued by the next `kindfix repair`. The applier orders the steps into
waves and lanes; what a step does is its action in kindfix/actions.py (a table by step kind),
which receives the run's StepContext (kindfix/context.py), never the applier."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from kindfix import lanes as lanes_mod
from kindfix.actions import BATCHED, STEPS, LaneFailed, continue_refreshes
from kindfix.context import Progress, StepContext
from kindfix.discovery import Cluster
from kindfix.errors import CommandError, KindfixError
from kindfix.journal import CHANGED, RunRecorder
from kindfix.node import Node
from kindfix.observe import NodeSnapshot
from kindfix.plan import Plan, Step
from kindfix.recovery.preparation import Beside, Preparation, keep_beside, unwritten_manifests
from kindfix.runtime import Runtime
from kindfix.steps import EtcdStrategy


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

    def context(self, etcd_parks: bool = False) -> StepContext:
        """What the steps (and the etcd recovery) work with, as the applier has it now."""
        return StepContext(self.runtime, self.cluster, self.nodes, self.snapshots,
                           self.recorder, self.progress, self.stopping, etcd_parks)

    def apply(self, plan: Plan) -> list[str]:
        """Steps in plan order; a run of per-node steps (files, certificates, restarts) goes
        node by node in plan order, all nodes at once. A snapshot restore of etcd prepares
        (stop, copy, restore beside the data) while the certificates are made: it needs the
        rewritten manifests, not the new certificates. Nothing of it is destructive: when a
        wave fails the preparation is stopped and undone (etcd starts again on its own data)."""
        numbered = list(enumerate(plan.steps, 1))
        done: list[str] = []
        etcd_step = next((s for s in plan.steps if s.kind == "etcd"), None)
        ctx = self.context(etcd_parks=parks_etcd(etcd_step, self.recorder))
        continue_refreshes(ctx)
        prepare = etcd_step is not None and not self.recorder.is_done(etcd_step.key) and \
            etcd_step.phase == "snapshot-restore"
        preparing: Preparation | None = None
        # the etcd.yaml the file wave leaves alone is kept (backed up) meanwhile, so parking it
        # does not wait for that (on the first control plane it did, ~1 s)
        keeping = keep_beside(ctx, unwritten_manifests(plan, ctx)) if prepare else None
        try:
            for wave in _waves(numbered):
                kind = wave[0][1].kind
                if prepare and preparing is None and kind != "write-file":
                    preparing, keeping = _prepare_beside(ctx, keeping), None
                if kind == "etcd" and preparing is not None:
                    preparing.join()
                    preparing = None  # its work is the etcd step's from here on
                done += self._run_wave(ctx, wave, len(plan.steps))
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
            if keeping is not None:
                keeping.join(quiet=True)  # backups only: nothing to undo
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
        return done

    def _run_wave(self, ctx: StepContext, wave: list[tuple[int, Step]], total: int
                  ) -> list[str]:
        lanes: dict[str, list[tuple[int, Step]]] = {}
        for item in wave:
            lanes.setdefault(item[1].node, []).append(item)  # one lane per node

        def interrupted(flying: list[list[tuple[int, Step]]]) -> None:
            steps = [step for items in flying for _, step in items
                     if not self.recorder.is_done(step.key)]
            if steps:
                self.progress("interrupted; in flight, finishing on their nodes without "
                              "waiting: " + "; ".join(_what(s) for s in steps))

        outcomes = lanes_mod.run_all(lambda items: self._run_steps(ctx, items, total),
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

    def _run_steps(self, ctx: StepContext, items: list[tuple[int, Step]], total: int
                   ) -> list[str]:
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
                BATCHED[steps[0].kind](ctx, steps)
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
                STEPS[step.kind](ctx, step)
            except LaneFailed:
                raise
            except KindfixError as e:
                raise LaneFailed(step, e) from e
            self.recorder.mark_done(step.key)
            done.append(step.key)
        return done

PER_NODE = ("write-file", "regen-cert", "restart-pod", "restart-kubelet")
# strategies that stop every member and park its manifest before anything else (context.py)
PARKING = (EtcdStrategy.SNAPSHOT_RESTORE, EtcdStrategy.FORCE_NEW_CLUSTER,
           EtcdStrategy.RESTORE_BACKUP)


def parks_etcd(etcd_step: Step | None, recorder: RunRecorder) -> bool:
    """The plan's etcd step, still to run, stops every member and parks its manifest."""
    return etcd_step is not None and etcd_step.phase in PARKING and \
        not recorder.is_done(etcd_step.key)


def _prepare_beside(ctx: StepContext, keeping: Beside | None) -> Preparation:
    """The etcd preparation, started once the etcd.yaml it parks are kept."""
    if keeping is not None:
        keeping.join()
    preparing = Preparation(ctx)
    preparing.start()
    return preparing


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

