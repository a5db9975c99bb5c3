"""`kindfix backup` and `kindfix restore`: keep a cluster's files and etcd on the host before
experimenting, and put them back."""

from __future__ import annotations

from pathlib import Path

import click

from kindfix import render
from kindfix.backup import MANIFEST, Backup, backup_cluster
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
from kindfix.completion import cluster_names
from kindfix.plan import Plan
from kindfix.restore import restore as restore_backup


def backup_table(b: Backup) -> str:
    nodes = sorted({f.node for f in b.files})
    lines = [f"backup of cluster {b.cluster} in {b.directory} ({b.created})"]
    for node in nodes:
        kept = [f for f in b.files if f.node == node and f.stored]
        left = [f for f in b.files if f.node == node and not f.stored]
        lines.append(f"  {node}: {len(kept)} files"
                     + (f", {len(left)} with private keys left out" if left else ""))
    for e in b.etcd:
        revision = f", revision {e.revision}" if e.revision is not None else ""
        lines.append(f"  etcd {e.kind} from {e.node}: {e.stored} ({e.size} bytes{revision})")
    if b.omitted and not b.include_keys:
        lines.append("Private keys are not in the backup (--include-keys to keep them); "
                     "a restore leaves those files as they are on the nodes.")
    lines += [f"warning: {w}" for w in b.warnings]
    lines.append(f"Every file is 0600; sha256 of each in {Path(b.directory) / MANIFEST}")
    return "\n".join(render.clean_line(line) for line in lines)


@click.command()
@name_option
@click.option("--output", "directory", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="A new (or empty) directory for the backup.")
@click.option("--include-keys", is_flag=True,
              help="Also keep private keys (*.key, kubeconfigs' client-key-data).")
@click.pass_obj
def backup(obj: Context, name: str, directory: Path, include_keys: bool) -> None:
    """Back up every node's /etc/kubernetes, /kind/kubeadm.conf, kubeadm-flags.env and etcd
    (a snapshot with quorum, else each member's data dir, checked) into DIR.

    DIR/kindfix-backup.json records every file with its sha256 (for scripts and restores)."""
    def progress(line: str) -> None:
        click.echo(render.clean_line(line), err=True)
    result = backup_cluster(obj.runtime, name, directory, include_keys, progress)
    click.echo(backup_table(result))


def _restore_plan_text(plan: Plan) -> str:
    return plan_text(plan, empty="the cluster matches the backup", notes="backup")


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", "-n", default=None, shell_complete=cluster_names,
              help="Cluster name (default: the cluster the backup was made from).")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before the first change.")
@click.option("--no-etcd", is_flag=True, help="Restore the files only; leave etcd's data as it is.")
@click.option("--verify-timeout", default=90, show_default=True, type=int,
              help="Seconds to wait for each component to become healthy.")
@OUTPUT
@click.pass_obj
def restore(obj: Context, directory: Path, name: str | None, dry_run: bool, yes: bool,
            no_etcd: bool, verify_timeout: int, fmt: str) -> None:
    """Put a `kindfix backup` DIRECTORY back onto the cluster it was made from: files byte for
    byte, the pods that read them restarted, etcd restored from the backup's snapshot.

    Exit 0 when the cluster is verified healthy, 4 when it is not, 1 on errors.
    """
    progress, confirm = interaction(fmt, yes, _restore_plan_text)
    outcome = restore_backup(obj.runtime, directory, name=name, dry_run=dry_run,
                             with_etcd=not no_etcd, confirm=confirm, progress=progress,
                             verify_wait=verify_timeout)
    if dry_run:
        emit(fmt, outcome, lambda: _restore_plan_text(outcome.plan) + "\n(dry run: nothing "
             "changed)")
        return
    if fmt == "table" and outcome.plan.empty:
        echo(_restore_plan_text(outcome.plan))

    def text() -> str:
        lines = checks_text(outcome.verification)
        lines += [f"  left as they are (not in the backup): {node}:{path}"
                  for node, path in outcome.omitted]
        verdict = "healthy" if outcome.healthy else "NOT healthy"
        run = f" (run {outcome.run_id}; undo files with `kindfix rollback {outcome.run_id}`)" \
            if outcome.run_id and outcome.applied else ""
        return "\n".join([*lines, f"Cluster {outcome.cluster} is {verdict}{run}."])
    emit_verdict(fmt, outcome, "healthy", outcome.healthy, text)
