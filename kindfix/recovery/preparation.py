"""The part of a snapshot restore that runs beside the certificate wave (Applier.apply): stop,
copy, choose and restore beside the data, on a daemon thread the applier can stop (Ctrl-C: after
its current command) or stop and undo (a failed wave: etcd starts again on its own data,
kindfix/scripts/etcd-unprepare.sh, and the journal forgets the etcd stages).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from kindfix.context import StepContext
from kindfix.discovery import ClusterNode
from kindfix.errors import KindfixError
from kindfix.lanes import map_all, run_all
from kindfix.nodescripts import script
from kindfix.plan import Plan
from kindfix.recovery.manifest import DATA_DIR, MANIFEST, PARKED
from kindfix.recovery.snapshot import fall_back, prepare_restore
from kindfix.recovery.state import NoRestoreTool, Recovery


def prepare(ctx: StepContext, rec: Recovery | None = None) -> None:
    """Stop, copy, choose, restore beside the data. Without a restore tool it only stops and
    copies; the etcd step then falls back."""
    rec = rec or Recovery(ctx)
    if rec.note("etcd-strategy") is None:
        rec.say("preparing the snapshot restore while the certificates are made")
        # saved with the first member's park (the next journal save, ~0.1-0.3 s sooner for
        # the park than a save of its own): a run killed before that finds its members parked
        # or running, and no leader, and so chooses snapshot-restore again
        rec.add_note("etcd-strategy", "snapshot-restore", save=False)
    if rec.note("etcd-strategy") != "snapshot-restore":
        return
    try:
        prepare_restore(rec, stage_only=True)
    except NoRestoreTool as e:
        fall_back(rec, e)


def unwritten_manifests(plan: Plan, ctx: StepContext) -> list[ClusterNode]:
    """The control planes whose etcd.yaml no step of `plan` rewrites: the preparation keeps
    (backs up) those itself before it parks them; the file wave keeps the others."""
    written = {s.node for s in plan.steps if s.kind == "write-file" and s.path == MANIFEST}
    return [cp for cp in ctx.cluster.control_planes if cp.name not in written]


class Beside:
    """fn() on a daemon thread beside the applier's waves; join() waits for it and raises its
    error (the applier reports it there)."""

    def __init__(self, fn: Callable[[], object], name: str) -> None:
        self._fn = fn
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def _run(self) -> None:
        try:
            self._fn()
        except BaseException as e:  # raised where the applier joins
            self._error = e

    def start(self) -> Beside:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, quiet: bool = False) -> None:
        """Wait for it (each of its commands has a timeout); its error, if any, is raised
        unless `quiet` (the wave failed anyway)."""
        while self._thread.is_alive():
            self._thread.join(0.1)
        if self._error is not None and not quiet:
            raise self._error


def keep_beside(ctx: StepContext, cps: list[ClusterNode]) -> Beside:
    """Recovery.keep_manifest on `cps` beside the file wave (backups only), started."""
    rec = Recovery(ctx)
    return Beside(lambda: map_all(rec.keep_manifest, cps, what=lambda cp: cp.name),
                  "kindfix-etcd-keep").start()


class Preparation:
    """prepare() on a daemon thread beside the certificates."""

    def __init__(self, ctx: StepContext, first: Callable[[], None] | None = None) -> None:
        """`first` runs before anything is stopped (waiting for the manifests' backups)."""
        self.recovery = Recovery(ctx)
        self.recovery.cancel = threading.Event()

        def work() -> None:
            if first is not None:
                first()
            prepare(ctx, self.recovery)
        self._work = Beside(work, "kindfix-etcd-prepare")

    def start(self) -> None:
        self._work.start()

    def join(self) -> None:
        """Wait for it (each of its commands has a timeout); its error, if any, is raised."""
        self._work.join()

    def cancel(self) -> None:
        assert self.recovery.cancel is not None
        self.recovery.cancel.set()

    def undo(self) -> list[str]:
        """Stop it, wait for its current command, then undo what it did. Returns notes for
        the error line."""
        self.cancel()
        if self._work.alive():
            self.recovery.say("waiting for the etcd preparation's current command, then "
                              "starting etcd again on its own data")
        self._work.join(quiet=True)  # its error is the one being undone
        if not (self.recovery.parked_now or any(
                k.startswith("etcd:") for k in self.recovery.rec.journal.done)):
            return []
        undone, left = unprepare(self.recovery)
        if not left:
            return ["etcd was started again on its own data (the prepared restore is undone)"]
        if not undone:
            return ["etcd was stopped for the restore and " + "; ".join(left)]
        return [f"etcd was started again on its own data on {', '.join(undone)}; "
                + "; ".join(left)]


def unprepare(rec: Recovery) -> tuple[list[str], list[str]]:
    """After a failed wave: etcd starts again on its own data where this preparation
    stopped it, the staged restore goes, and the journal forgets the etcd stages (the next
    run stops, copies and chooses afresh), but for a member it could not undo: that one's
    park and copy stay journaled, as they still are. Nothing was swapped in (stage_only).
    Returns the members undone, and what could not be undone."""
    restored = [cp.name for cp in rec.cps if not rec.stage(f"restored:{cp.name}")]
    if restored:  # swapped in: only the etcd step does; nothing is undone then
        return [], [f"{name}: etcd data already restored, etcd stays stopped"
                    for name in restored]

    def undo(cp: ClusterNode) -> None:
        # only a member this run stopped starts again: one parked before stays parked
        how = "unpark" if cp.name in rec.parked_now else "clean"
        argv = ["sh", "-c", script("etcd-unprepare"), "kindfix-unprepare", how, MANIFEST,
                PARKED, DATA_DIR]
        # a node going down answers too (exit 137): not raised, but not undone either
        result = rec.nodes[cp.name].exec(argv, timeout=60)
        if not result.ok:
            raise KindfixError(f"exit {result.exit_code}")

    outcomes = run_all(undo, rec.cps)
    failed = [o for o in outcomes if o.error is not None]
    # a member not undone keeps its park and copy journaled (its manifest may be parked: the
    # next run reads it as it is, and observes the manifest)
    kept = {f"etcd:{stage}:{o.item.name}" for o in failed for stage in ("park", "copy")}
    rec.rec.forget(lambda k: k.startswith("etcd:") and k not in kept, note_prefix="etcd-")
    return [o.item.name for o in outcomes if o.error is None], [
        f"{o.item.name}: could not start etcd again "
        f"({(str(o.error).splitlines() or ['?'])[0][:200]}), its manifest may be in {PARKED}"
        for o in failed]
