"""The command line: registers commands, turns options into one core call, renders the result.

Errors are handled once, here: a KindfixError prints one line (and a hint) and exits 1; anything
else is a bug: exit 3, traceback with -v.

Here: the group, the commands that only read (clusters, nodes, audit, collect) and `main`. What
every command uses is cli_common.py; the commands that change a cluster are cli_repair.py; the
`etcd`, `backup` and `restore` groups are cli_etcd.py and cli_backup.py.
"""

from __future__ import annotations

import io
import logging
import sys
import traceback
from pathlib import Path

import click

from kindfix import __version__, api, errors, render
from kindfix.audit import AuditReport
from kindfix.cli_backup import backup, restore
from kindfix.cli_common import OUTPUT, Context, echo, emit, emit_verdict, name_option
from kindfix.cli_etcd import etcd
from kindfix.cli_repair import pin, repair, rollback, runs, unlock, unpin
from kindfix.discovery import Cluster

# Context is how a caller (the tests, completion.py) hands main a runtime; cli is the click group.
__all__ = ["Context", "cli", "main"]


class _WarningLine(logging.Handler):
    """The core's warnings (logger "kindfix", e.g. a journal it had to skip), one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        echo(f"kindfix: warning: {render.clean_line(record.getMessage())}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks for unexpected errors.")
@click.version_option(__version__, prog_name="kindfix")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Repair kind clusters broken by Docker re-assigning node IP addresses."""
    if ctx.obj is None:
        ctx.obj = Context()
    ctx.obj.verbose = verbose


@cli.command()
@OUTPUT
@click.pass_obj
def clusters(obj: Context, fmt: str) -> None:
    """List kind clusters (like `kind get clusters`)."""
    names = api.clusters(obj.runtime)
    emit(fmt, {"clusters": names}, lambda: "\n".join(names) or "No kind clusters found.")


def _cluster_table(cluster: Cluster) -> str:
    rows = [(n.name, n.role, n.state, n.ipv4 or "-", n.ipv6 or "-",
             ",".join(ip for ip in (n.pinned_ipv4, n.pinned_ipv6) if ip) or "-")
            for n in cluster.nodes]
    head = f"cluster {cluster.name} on network {cluster.network}"
    return head + "\n" + render.table(("node", "role", "state", "ipv4", "ipv6", "pinned"), rows)


@cli.command()
@name_option
@OUTPUT
@click.pass_obj
def nodes(obj: Context, name: str, fmt: str) -> None:
    """Show a cluster's nodes: role, state, current IPs, pinned IPs."""
    cluster = api.nodes(obj.runtime, name)
    emit(fmt, cluster, lambda: _cluster_table(cluster))


def _audit_table(report: AuditReport) -> str:
    out = []
    for n in report.nodes:
        ips = ", ".join(ip for ip in (n.ipv4, n.ipv6) if ip) or "no address"
        out.append(f"\n{n.name} ({n.role}, {n.state}, {ips}; kind image {n.generation})")
        rows = [(f.component, f.source.rsplit("/", 1)[-1], f.advertised, f.actual, f.status)
                for f in report.findings if f.node == n.name]
        if rows:
            out.append(render.table(("component", "source", "advertised", "actual", "status"),
                                    rows))
    out.append("\nDiagnosis:")
    out += [f"  - {line}" for line in report.diagnosis]
    return "\n".join(out).lstrip("\n")


@cli.command()
@name_option
@click.option("--from-dump", type=click.Path(path_type=Path, file_okay=False),
              help="Audit a dump written by `kindfix collect` instead of a live cluster.")
@OUTPUT
@click.pass_obj
def audit(obj: Context, name: str, from_dump: Path | None, fmt: str) -> None:
    """Show every address each component advertises against the nodes' real IPs.

    Exit 0 when everything is consistent, 4 when stale addresses are found, 1 on errors.
    """
    report = api.audit_dump(from_dump) if from_dump else api.audit_live(obj.runtime, name)
    emit_verdict(fmt, report, "consistent", report.consistent, lambda: _audit_table(report))


@cli.command()
@name_option
@click.option("--output", "output", required=True, type=click.Path(path_type=Path),
              help="Directory to write the dump to.")
@click.pass_obj
def collect(obj: Context, name: str, output: Path) -> None:
    """Save everything audit reads (secrets redacted) for a bug report or offline audit."""
    path = api.collect(obj.runtime, name, output)
    echo(f"dump of cluster {name} written to {path}")
    echo(f"audit it offline with: kindfix audit --from-dump {path}")


def main(argv: list[str] | None = None, obj: Context | None = None) -> None:
    verbose = "-v" in (argv if argv is not None else sys.argv[1:]) or "--verbose" in (
        argv if argv is not None else sys.argv[1:])
    warnings = _WarningLine()
    core_log = logging.getLogger("kindfix")
    core_log.addHandler(warnings)
    core_log.propagate = False  # printed once, by the handler
    try:
        cli.main(args=argv, obj=obj, standalone_mode=False, prog_name="kindfix")
    except errors.KindfixError as e:
        echo(f"kindfix: error: {render.clean_line(e.message)}", err=True)
        if e.hint:
            echo(f"  hint: {render.clean_line(e.hint)}", err=True)
        sys.exit(errors.EXIT_ERROR)
    except click.exceptions.Abort:
        echo("aborted", err=True)
        sys.exit(errors.EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        echo("interrupted", err=True)
        sys.exit(errors.EXIT_INTERRUPTED)
    except click.ClickException as e:
        shown = io.StringIO()  # usage errors quote the user's arguments: escaped as well
        e.show(file=shown)
        echo(shown.getvalue(), err=True, nl=False)
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as e:  # a bug: say so, keep the details for -v
        echo(f"kindfix: internal error: {type(e).__name__}: {render.clean_line(str(e))}",
             err=True)
        if verbose:
            traceback.print_exc()
        else:
            echo("  hint: rerun with -v for the traceback and report it", err=True)
        sys.exit(errors.EXIT_BUG)
    finally:
        core_log.removeHandler(warnings)
        core_log.propagate = True
    sys.exit(errors.EXIT_OK)


# The commands that change a cluster, and the command groups, live in modules of their own.
for command in (repair, rollback, runs, unlock, pin, unpin, etcd, backup, restore):
    cli.add_command(command)
