"""`kindfix etcd members|health`: etcd as each control plane sees it (read-only)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kindfix import api, dump, errors, render
from kindfix.cli_common import OUTPUT, Context, emit, name_option
from kindfix.etcdview import EtcdView, MemberRow, etcd_view


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e5 else str(n)


def _opt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _row(m: MemberRow) -> tuple[str, ...]:
    urls = ",".join(m.peer_urls) or "-"
    current = {True: "current", False: "STALE", None: "?"}[m.urls_current]
    return (m.node, m.state, m.member_id or "-", f"{urls} ({m.urls_from})", current,
            _opt(m.is_leader), _opt(m.raft_term), _opt(m.raft_index), _opt(m.revision),
            _size(m.db_size), "*" if m.most_up_to_date else "")


def members_table(view: EtcdView) -> str:
    out = [render.table(("node", "state", "member id", "peer urls (from)", "urls", "leader",
                         "term", "index", "revision", "db", "newest"),
                        [_row(m) for m in view.members], max_width=70)]
    out.append("\nMember lists:")
    for v in view.views:
        if v.error:
            out.append(f"  {v.node}: none ({render.clean_line(v.error)[:120]})")
        else:
            out.append(f"  {v.node} (cluster {v.cluster_id or '?'}): {', '.join(v.members)}")
    out.append("\nDiagnosis:")
    out += [f"  - {render.clean_line(line)}" for line in view.diagnosis]
    return "\n".join(out)


def health_table(view: EtcdView) -> str:
    rows = [(m.node, m.state, _opt(m.has_leader), {True: "current", False: "STALE",
                                                   None: "?"}[m.urls_current])
            for m in view.members]
    verdict = "healthy" if view.healthy else "NOT healthy"
    return "\n".join([render.table(("node", "state", "has leader", "urls"), rows),
                      f"\netcd: {verdict}", *[f"  - {line}" for line in view.diagnosis]])


def _view(obj: Context, name: str, from_dump: Path | None) -> EtcdView:
    if from_dump is not None:
        cluster, snapshots = dump.load_dump(from_dump)
    else:
        seen = api.observe(obj.runtime, name)
        cluster, snapshots = seen.cluster, seen.snapshots
    return etcd_view(cluster, snapshots)


FROM_DUMP = click.option("--from-dump", type=click.Path(exists=True, file_okay=False,
                                                        path_type=Path),
                         help="Read a dump made by `kindfix collect` instead of the engine.")


@click.group()
def etcd() -> None:
    """Inspect etcd: membership and health, with or without quorum (read-only)."""


@etcd.command()
@name_option
@FROM_DUMP
@OUTPUT
@click.pass_obj
def members(obj: Context, name: str, from_dump: Path | None, fmt: str) -> None:
    """Every member as each control plane sees it: IDs, peer URLs against the node's current
    IP, leader, raft term/index, revision, DB size, and which member is most up to date."""
    view = _view(obj, name, from_dump)
    emit(fmt, view, lambda: members_table(view))


@etcd.command()
@name_option
@FROM_DUMP
@OUTPUT
@click.pass_obj
def health(obj: Context, name: str, from_dump: Path | None, fmt: str) -> None:
    """Quorum, leaders and current URLs of every member; exit 4 when not healthy."""
    view = _view(obj, name, from_dump)
    emit(fmt, view, lambda: health_table(view))
    if not view.healthy:
        sys.exit(errors.EXIT_FINDINGS)
