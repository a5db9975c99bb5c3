"""`kindfix backup`: keep a cluster's files and etcd on the host before experimenting."""

from __future__ import annotations

from pathlib import Path

import click

from kindfix import render
from kindfix.backup import MANIFEST, Backup, backup_cluster
from kindfix.cli import Context, name_option


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
