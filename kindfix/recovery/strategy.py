"""Choosing and running an etcd strategy for the etcd step (DOMAIN.md "What nothing repairs"):
member-update while quorum holds, else snapshot-restore, falling back to force-new-cluster when
the etcd image has no tool that reads a member's data offline. The strategy a run started with
is journaled (`etcd-strategy=`) and kept by the run that continues it.
"""

from __future__ import annotations

from kindfix.context import StepContext
from kindfix.recovery import force_new, member_update, snapshot
from kindfix.recovery.leader import leader_within
from kindfix.recovery.state import NoRestoreTool, Recovery

RESTORE_BACKUP = "restore-backup"  # `kindfix restore`: snapshot restore from a backup's data


def repair(ctx: StepContext, strategy: str, source: bytes | None = None) -> None:
    """Run an etcd strategy ("decide": choose by whether a member has a leader). RESTORE_BACKUP
    restores every member from `source` (a backup's snapshot) through the snapshot-restore
    path; continued after a kill, it uses the copies it staged."""
    rec = Recovery(ctx)
    started = rec.note("etcd-strategy")
    if started is not None:  # a killed run (or the preparation) already stopped etcd
        strategy = started
    if strategy == "decide":
        # every member runs without a leader for 5 s (a few election timeouts): quorum is lost
        leader = leader_within(rec, 30, give_up_without_leader=5)
        strategy = "member-update" if leader else "snapshot-restore"
        rec.say(f"chose {strategy}")
    if strategy == "member-update":
        member_update.member_update(rec)
        return
    if started is None:
        rec.add_note("etcd-strategy", strategy)
    if strategy == RESTORE_BACKUP:
        rec.from_backup, rec.source = True, source
        snapshot.snapshot_restore(rec)  # no fall-back: only a restore tool can put a backup back
        return
    if strategy == "snapshot-restore":
        try:
            snapshot.snapshot_restore(rec)
            return
        except NoRestoreTool as e:
            snapshot.fall_back(rec, e)
    force_new.force_new_cluster(rec)
