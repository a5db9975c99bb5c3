"""The commands that change a cluster or its records: repair, rollback, runs, unlock, pin,
unpin."""

from __future__ import annotations

import click

from kindfix import api, completion, errors, render, scope, settle
from kindfix.api import RepairOutcome
from kindfix.cli_common import (
    OUTPUT,
    Context,
    checks_text,
    echo,
    emit,
    emit_verdict,
    interaction,
    name_option,
    plan_text,
)
from kindfix.lock import duration
from kindfix.plan import STRATEGIES
from kindfix.retention import PruneResult


def _outcome_text(outcome: RepairOutcome) -> str:
    lines = checks_text(outcome.verification)
    for p in outcome.pinned:
        lines.append(f"  pinned {p.node} to {', '.join(ip for ip in (p.ipv4, p.ipv6) if ip)}")
    lines += [f"  warning: {w}" for w in outcome.warnings]
    if outcome.left_out:
        lines.append(f"  not repaired (out of scope; the checks above cover the whole cluster): "
                     f"{len(outcome.left_out)} step(s)")
        lines += [f"    - {s}" for s in outcome.left_out]
    verdict = "healthy" if outcome.healthy else "NOT healthy"
    run = f" (run {outcome.run_id}; undo files with `kindfix rollback {outcome.run_id}`)" \
        if outcome.run_id and outcome.applied else ""
    lines.append(f"Cluster {outcome.cluster} is {verdict}{run}.")
    return "\n".join(lines)


@click.command()
@name_option
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before the first change.")
@click.option("--etcd-strategy", type=click.Choice(STRATEGIES), default="auto",
              show_default=True, help="How to repair etcd membership.")
@click.option("--pin", "pin_after", is_flag=True,
              help="After a healthy repair, pin the node IPs so they cannot move again.")
@click.option("--verify-timeout", default=90, show_default=True, type=int,
              help="Seconds to wait for each component to become healthy.")
@click.option("--etcd-start-wait", default=int(settle.DEFAULT_WAIT), show_default=True,
              type=click.IntRange(min=0),
              help="Seconds to wait for etcd to start when no member has a leader yet and no "
                   "file shows a stale etcd address (0: do not wait; etcd is then left alone).")
@click.option("--only", "only", multiple=True, type=click.Choice(list(scope.PARTS)),
              help="Repair only this part (repeatable); what it strictly needs comes along "
                   "and the plan says so.")
@click.option("--node", "on_nodes", multiple=True, shell_complete=completion.node_names,
              help="Repair only on this node (repeatable).")
@OUTPUT
@click.pass_obj
def repair(obj: Context, name: str, dry_run: bool, yes: bool, etcd_strategy: str,
           pin_after: bool, verify_timeout: int, etcd_start_wait: int, only: tuple[str, ...],
           on_nodes: tuple[str, ...], fmt: str) -> None:
    """Plan, apply and verify the repair of a cluster whose node IPs changed.

    Exit 0 when the cluster is verified healthy, 4 when it is not, 1 on errors.
    """
    table = fmt == "table"
    progress, confirm = interaction(fmt, yes)
    outcome = api.repair(obj.runtime, name, dry_run=dry_run, strategy=etcd_strategy,
                         confirm=confirm, progress=progress, pin_after=pin_after,
                         verify_wait=verify_timeout, etcd_wait=etcd_start_wait, only=only,
                         nodes=on_nodes)
    if dry_run:
        emit(fmt, outcome, lambda: plan_text(outcome.plan) + "\n(dry run: nothing changed)")
        return
    if table and outcome.plan.empty:
        echo(plan_text(outcome.plan))
    emit_verdict(fmt, outcome, "healthy", outcome.healthy, lambda: _outcome_text(outcome))


@click.command()
@name_option
@click.argument("run_id", required=False)
@click.pass_obj
def rollback(obj: Context, name: str, run_id: str | None) -> None:
    """Restore, byte for byte, every file a repair run changed (default: the latest run).

    etcd membership changes cannot be rolled back; the etcd data dir copies stay in the backups.
    """
    rid, restored = api.rollback(obj.runtime, name, run_id)
    for item in restored:
        echo(f"restored {item}")
    echo(f"rolled back run {rid}: {len(restored)} file(s) restored")


@click.command()
@name_option
@click.option("--prune", is_flag=True,
              help="Delete the journals and backups of old finished runs: keeps the newest "
                   "--keep runs and every unfinished (running or failed) run.")
@click.option("--keep", default=5, show_default=True, type=click.IntRange(min=0),
              help="With --prune: how many of the newest runs to keep.")
@click.option("--dry-run", is_flag=True, help="With --prune: list what would be deleted.")
@OUTPUT
@click.pass_obj
def runs(obj: Context, name: str, prune: bool, keep: int, dry_run: bool, fmt: str) -> None:
    """List the repair runs recorded in the cluster (or prune old ones)."""
    if prune:
        result = api.prune_runs(obj.runtime, name, keep, dry_run)
        emit(fmt, result, lambda: _prune_text(result))
        return
    if dry_run:
        raise errors.KindfixError("--dry-run lists what --prune would delete",
                                  hint="kindfix runs --prune --dry-run")
    journals = api.runs(obj.runtime, name)
    emit(fmt, journals, lambda: render.table(
        ("run", "status", "files", "steps"),
        [(j.run_id, j.status, str(len(j.files)), str(len(j.done))) for j in journals]))


def _prune_text(result: PruneResult) -> str:
    would = "would delete" if result.dry_run else "deleted"
    rows = [(r.run_id, r.status, would if r.action == "delete" else "kept", r.reason)
            for r in result.runs]
    lines = [render.table(("run", "status", "action", "why"), rows)] if rows else [
        f"no repair runs recorded in cluster {result.cluster}"]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"{len(result.deleted)} run(s) {would}"
                 + (" (dry run: nothing changed)" if result.dry_run else ""))
    return "\n".join(lines)


@click.command()
@name_option
@click.option("--force", is_flag=True,
              help="Break the lock even when its holder looks alive (two runs may then change "
                   "the cluster at once).")
@click.pass_obj
def unlock(obj: Context, name: str, force: bool) -> None:
    """Break the cluster's lock left by a kindfix that died (see kindfix/lock.py: a holder on
    this machine whose process is gone, or one silent for 2 minutes)."""
    holder = api.unlock(obj.runtime, name, force)
    if holder is None:
        echo(f"cluster {name} is not locked")
        return
    echo(f"removed the lock of kindfix {holder.command()} by {holder.who()}, taken "
         f"{duration(holder.age)} ago")


@click.command()
@name_option
@click.pass_obj
def pin(obj: Context, name: str) -> None:
    """Pin every node to its current IP (docker network disconnect/connect --ip)."""
    results, warnings = api.pin(obj.runtime, name, echo)
    for r in results:
        state = "pinned" if r.changed else "already pinned"
        echo(f"{r.node}: {state} at {', '.join(ip for ip in (r.ipv4, r.ipv6) if ip)}")
    for w in warnings:
        echo(f"warning: {w}", err=True)


@click.command()
@name_option
@click.pass_obj
def unpin(obj: Context, name: str) -> None:
    """Let Docker assign node IPs again (the address may change: run `kindfix audit`)."""
    for r in api.unpin(obj.runtime, name, echo):
        echo(f"{r.node}: unpinned, now {r.ipv4}" + (" (changed)" if r.changed else ""))
