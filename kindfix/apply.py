"""Applying a plan: every step backs up what it changes first and is journaled, so a run that is
killed at any point is continued by the next `kindfix repair`. The applier orders the steps into
waves and lanes; what a step does is its action in kindfix/actions.py (a table by step kind),
which receives the run's StepContext (kindfix/context.py), never the applier."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Mapping

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
                 progress: Progress, apiservers_due: threading.Event | None = None) -> None:
        self.runtime = runtime
        self.cluster = cluster
        self.nodes = nodes
        self.snapshots = snapshots
        self.recorder = recorder
        self.progress = progress
        self.stopping = threading.Event()  # set on failure or Ctrl-C: start nothing new
        # set when the apiservers can answer again: by the etcd step once its members start,
        # else once every step is done
        self.apiservers_due = apiservers_due or threading.Event()

    def context(self, etcd_parks: bool = False) -> StepContext:
        """What the steps (and the etcd recovery) work with, as the applier has it now."""
        return StepContext(self.runtime, self.cluster, self.nodes, self.snapshots,
                           self.recorder, self.progress, self.stopping, etcd_parks,
                           apiservers_due=self.apiservers_due)

    def apply(self, plan: Plan) -> list[str]:
        """Steps in plan order; a run of per-node steps (files, certificates, restarts) goes
        node by node in plan order, all nodes at once, each node's certificates right after its
        own files. A snapshot restore of etcd prepares (stop, copy, restore beside the data)
        while the certificates are made, from when every node's files are written: it needs
        the rewritten manifests, not the new certificates. Nothing of it is destructive: when a
        wave fails the preparation is stopped and undone (etcd starts again on its own data)."""
        numbered = list(enumerate(plan.steps, 1))
        done: list[str] = []
        etcd_step = next((s for s in plan.steps if s.kind == "etcd"), None)
        ctx = self.context(etcd_parks=parks_etcd(etcd_step, self.recorder))
        continue_refreshes(ctx)
        prepare = etcd_step is not None and not self.recorder.is_done(etcd_step.key) and \
            etcd_step.phase == "snapshot-restore"
        beside = _EtcdPreparationBeside(ctx, plan) if prepare else None
        try:
            for wave in _waves(numbered):
                kinds = {step.kind for _, step in wave}
                after_files = beside.before(kinds) if beside is not None else None
                done += self._run_wave(ctx, wave, len(plan.steps), after_files)
            if beside is not None:
                beside.join()
            self.apiservers_due.set()
        except KeyboardInterrupt:
            self.stopping.set()
            if beside is not None and beside.cancel():
                self.progress("interrupted: the etcd preparation stops after its current "
                              "command (the next `kindfix repair` continues it)")
            raise
        except KindfixError as e:
            self.stopping.set()
            notes = beside.undo() if beside is not None else None
            if notes is None:
                raise
            if isinstance(e, StepsFailed):
                raise StepsFailed(e.failures, notes) from None
            raise KindfixError("; ".join([e.message, *notes]), hint=e.hint) from None
        except BaseException:  # a bug: stop what runs beside, report it as it is
            self.stopping.set()
            if beside is not None:
                beside.cancel()
            raise
        return done

    def _run_wave(self, ctx: StepContext, wave: list[tuple[int, Step]], total: int,
                  after_files: Callable[[], None] | None = None) -> list[str]:
        """One lane per node, all at once. `after_files` runs once every lane has written its
        files (never if one fails)."""
        lanes: dict[str, list[tuple[int, Step]]] = {}
        for item in wave:
            lanes.setdefault(item[1].node, []).append(item)  # one lane per node
        files_written = _when_all(len(lanes), after_files or (lambda: None))

        def interrupted(flying: list[list[tuple[int, Step]]]) -> None:
            steps = [step for items in flying for _, step in items
                     if not self.recorder.is_done(step.key)]
            if steps:
                self.progress("interrupted; in flight, finishing on their nodes without "
                              "waiting: " + "; ".join(_what(s) for s in steps))

        failed = threading.Event()  # a lane of this wave failed: the others start no more kinds

        def lane(items: list[tuple[int, Step]]) -> list[str]:
            try:
                return self._run_steps(ctx, items, total, files_written, failed)
            except BaseException:
                failed.set()
                raise

        outcomes = lanes_mod.run_all(lane, list(lanes.values()), on_interrupt=interrupted,
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

    def _run_steps(self, ctx: StepContext, items: list[tuple[int, Step]], total: int,
                   files_written: Callable[[], None], failed: threading.Event) -> list[str]:
        """A node's steps in plan order: its files, then its certificates (kubeadm reads the
        node's rewritten /kind/kubeadm.conf), each kind batched where it can be; calls
        `files_written` once its files are. Each lane's first kind runs whatever the others do,
        as in a wave of one kind; once another lane has `failed`, no further kind starts (a
        failed file write on one node: no certificates start after it)."""
        todo = []
        for i, step in items:
            if self.recorder.is_done(step.key):
                self.progress(f"[{i}/{total}] already done: {step.summary}")
            else:
                todo.append((i, step))
        groups = [list(g) for _, g in itertools.groupby(todo, key=lambda item: item[1].kind)]
        if not groups or groups[0][0][1].kind != "write-file":
            files_written()
        done: list[str] = []
        unsaved = False
        for n, group in enumerate(groups):
            if self.stopping.is_set() or (n > 0 and failed.is_set()):
                break  # Ctrl-C, or (for a further kind) a step of another node failed
            # a batch's done marks go with the next batch's first save (its journal entries)
            unsaved = n < len(groups) - 1
            done += self._run_group(ctx, group, total, save=not unsaved)
            if group[0][1].kind == "write-file":
                files_written()
        if unsaved:
            self.recorder.save()  # the next batch did not start: its marks are saved here
        return done

    def _run_group(self, ctx: StepContext, group: list[tuple[int, Step]], total: int,
                   save: bool) -> list[str]:
        """Steps of one kind on one node: one batch where the kind has one, else in turn."""
        kind = group[0][1].kind
        if kind in BATCHED:
            for i, step in group:
                self.progress(f"[{i}/{total}] [{step.node}] {step.summary}")
            steps = [step for _, step in group]
            try:
                BATCHED[kind](ctx, steps)
            except LaneFailed:
                raise
            except KindfixError as e:
                raise LaneFailed(steps[0], e) from e
            self.recorder.mark_done(*(step.key for step in steps), save=save)
            return [step.key for step in steps]
        done = []
        for i, step in group:
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


class _EtcdPreparationBeside:
    """A snapshot restore's preparation beside the waves: started before the first wave that
    writes no file, or once every node's files of the file wave are written; joined before the
    etcd step, undone if a wave fails first."""

    def __init__(self, ctx: StepContext, plan: Plan) -> None:
        self._ctx = ctx
        # the etcd.yaml the file wave leaves alone is kept (backed up) meanwhile, so parking
        # it does not wait for that (on the first control plane it did, ~1 s)
        self._keeping: Beside | None = keep_beside(ctx, unwritten_manifests(plan, ctx))
        self._preparing: Preparation | None = None
        self._due = True
        self._lock = threading.Lock()  # started from the lane that writes the last file

    def before(self, kinds: Collection[str]) -> Callable[[], None] | None:
        """Called before each wave: the call that starts it once the wave's files are
        written, if that is when it starts."""
        if self._due and "write-file" in kinds:
            return self._start  # it parks the rewritten etcd.yaml
        self._start()
        if "etcd" in kinds:
            self.join()  # its work is the etcd step's from here on
        return None

    def _start(self) -> None:
        with self._lock:
            if not self._due or self._ctx.stopping.is_set():
                return  # started already, or a wave failed (or Ctrl-C) meanwhile
            self._due = False
            keeping, self._keeping = self._keeping, None
            # it parks once the etcd.yaml are kept: a failure to keep them is its error
            self._preparing = Preparation(self._ctx, first=keeping.join if keeping else None)
            self._preparing.start()

    def join(self) -> None:
        if self._preparing is not None:
            self._preparing.join()
            self._preparing = None

    def cancel(self) -> bool:
        """Stop it after its current command (never start it); whether it was running."""
        with self._lock:
            self._due = False
            if self._preparing is None:
                return False
            self._preparing.cancel()
            return True

    def undo(self) -> list[str] | None:
        """After a failed wave: its notes for the error line, or None if it never started."""
        with self._lock:
            self._due = False
            keeping, preparing = self._keeping, self._preparing
        if keeping is not None:
            keeping.join(quiet=True)  # backups only: nothing to undo
        return preparing.undo() if preparing is not None else None


def _when_all(count: int, action: Callable[[], None]) -> Callable[[], None]:
    """A callback for `count` callers, each calling it once: the last call runs `action`."""
    left = [count]
    lock = threading.Lock()

    def arrive() -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            action()
    return arrive


# a node's certificates follow its own files in one lane, so no node's certificates wait for
# another node's files
NODE_FILES = ("write-file", "regen-cert")


def _waves(numbered: list[tuple[int, Step]]) -> list[list[tuple[int, Step]]]:
    """Consecutive per-node steps of one kind form a wave, files and certificates one wave
    together (kubeadm reads the node's rewritten /kind/kubeadm.conf: its lane writes that
    first); every other step is a wave of its own."""
    waves: list[list[tuple[int, Step]]] = []
    for item in numbered:
        kind, before = item[1].kind, waves[-1][-1][1].kind if waves else None
        if before is not None and kind in PER_NODE and (
                kind == before or {kind, before} <= set(NODE_FILES)):
            waves[-1].append(item)
        else:
            waves.append([item])
    return waves

