"""Which repair runs' journals and backups to delete (`kindfix runs --prune`).

Rule: keep the newest `keep` runs of the cluster, and EVERY run that is not finished (running
or failed: the next repair resumes it, `rollback` needs its backups); delete the other finished
runs (done, rolled-back): their journal on the first control plane and their backup directory
on every node. A run whose id is not one kindfix makes is left alone (its id would become a
path to delete).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from kindfix.journal import JOURNAL_DIR, ROOT, Journal
from kindfix.node import NO_SHELL, Node
from kindfix.nodescripts import script

FINISHED = ("done", "rolled-back")
RUN_ID = re.compile(r"\d{8}T\d{6}Z-\d{4}")  # journal.new_run_id
DELETE = "delete"
KEEP = "keep"


@dataclass(frozen=True)
class RunDecision:
    run_id: str
    status: str
    action: str  # delete | keep
    reason: str


@dataclass(frozen=True)
class PruneResult:
    cluster: str
    keep: int
    dry_run: bool
    runs: tuple[RunDecision, ...]
    notes: tuple[str, ...] = ()
    __render_properties__: ClassVar[tuple[str, ...]] = ("deleted",)

    @property
    def deleted(self) -> tuple[str, ...]:
        return tuple(r.run_id for r in self.runs if r.action == DELETE)


def decide(journals: list[Journal], keep: int) -> list[RunDecision]:
    """The retention rule over one cluster's runs, newest first (pure)."""
    out = []
    # run ids start with their UTC start time, so they sort by age
    for i, j in enumerate(sorted(journals, key=lambda j: j.run_id, reverse=True)):
        if not RUN_ID.fullmatch(j.run_id):
            out.append(RunDecision(j.run_id, j.status, KEEP,
                                   "not a run id kindfix makes: left alone"))
        elif j.status not in FINISHED:
            out.append(RunDecision(j.run_id, j.status, KEEP,
                                   "unfinished: the next repair resumes it, rollback needs it"))
        elif i < keep:
            out.append(RunDecision(j.run_id, j.status, KEEP, f"one of the newest {keep}"))
        else:
            out.append(RunDecision(j.run_id, j.status, DELETE,
                                   f"finished, older than the newest {keep}"))
    return out


def backup_paths(journal: Journal, node_names: list[str]) -> dict[str, list[str]]:
    """{node: paths} of one run's backups: its backup directory on every node, and backups it
    kept elsewhere (beside a shell-less load balancer's config)."""
    rid = journal.run_id
    backups = f"{ROOT}/backups/{rid}"
    out: dict[str, list[str]] = {n: [backups] for n in node_names}
    for entry in journal.files:
        backup, node = entry.backup, entry.node
        if node in out and not backup.startswith(backups + "/") and \
                backup.endswith(f".kindfix-{rid}"):
            out[node].append(backup)
    return out


def _delete(node: Node, paths: list[str]) -> str | None:
    """None when deleted, else why not."""
    result = node.exec(["sh", "-c", script("prune-backups"), "kindfix-prune", *paths],
                       timeout=120)
    if result.exit_code in NO_SHELL:
        return f"left {len(paths)} backup path(s) on {node.name}: it has no shell to delete with"
    if not result.ok:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        return f"could not delete on {node.name}: " + (
            detail[-1] if detail else f"exit {result.exit_code}")
    return None


def prune(cluster: str, nodes: Mapping[str, Node], journal_node: str, journals: list[Journal],
          keep: int, dry_run: bool) -> PruneResult:
    """Apply the rule: every node's backups of the doomed runs first, their journals last and
    only when every node's backups went (a prune that fails halfway leaves the journals, so
    the next prune finishes the job and no backup is left without its record)."""
    decisions = decide([j for j in journals if j.cluster == cluster], keep)
    doomed = [j for j in journals if j.cluster == cluster and
              j.run_id in {d.run_id for d in decisions if d.action == DELETE}]
    notes: list[str] = []
    if dry_run or not doomed:
        return PruneResult(cluster, keep, dry_run, tuple(decisions))
    by_node: dict[str, list[str]] = {}
    for j in doomed:
        for node, paths in backup_paths(j, list(nodes)).items():
            by_node.setdefault(node, []).extend(paths)
    failed = False
    for name, paths in by_node.items():
        problem = _delete(nodes[name], paths)
        if problem:
            notes.append(problem)
            failed = failed or "no shell" not in problem
    if failed:
        notes.append("journals kept: run `kindfix runs --prune` again once the nodes answer")
    else:
        problem = _delete(nodes[journal_node], [f"{JOURNAL_DIR}/{j.run_id}.json" for j in doomed])
        if problem:
            notes.append(problem)
    return PruneResult(cluster, keep, dry_run, tuple(decisions), tuple(notes))
