"""The command line: registers commands, turns options into one core call, renders the result.

Errors are handled once, here: a KindfixError prints one line (and a hint) and exits 1; anything
else is a bug: exit 3, traceback with -v.
"""

from __future__ import annotations

import io
import logging
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kindfix import __version__, api, completion, errors, render, scope, settle
from kindfix.api import RepairOutcome
from kindfix.audit import AuditReport
from kindfix.discovery import Cluster, default_cluster_name
from kindfix.lock import duration
from kindfix.names import validate_cluster_name
from kindfix.plan import STRATEGIES, Plan
from kindfix.retention import PruneResult
from kindfix.runtime import Runtime
from kindfix.verify import Verification

OUTPUT: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "-o", "--output", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table",
    show_default=True, help="Output format.")


def _cluster_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    return validate_cluster_name(value)  # one error line (KindfixError), before any engine call


def name_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--name", "-n", default=default_cluster_name, show_default="kind",
                        shell_complete=completion.cluster_names, callback=_cluster_name,
                        help="Cluster name (default: $KIND_CLUSTER_NAME or kind).")(f)


def echo(text: str, err: bool = False, nl: bool = True) -> None:
    """Every text line goes out through here: node data (file contents in diffs, command
    output in errors, names) may carry terminal escape sequences; they are shown escaped."""
    click.echo(render.clean(text), err=err, nl=nl)


class _WarningLine(logging.Handler):
    """The core's warnings (logger "kindfix", e.g. a journal it had to skip), one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        echo(f"kindfix: warning: {render.clean_line(record.getMessage())}", err=True)


class Context:
    def __init__(self, runtime_factory: Callable[[], Runtime] | None = None,
                 verbose: bool = False) -> None:
        self._factory = runtime_factory
        self._runtime: Runtime | None = None
        self.verbose = verbose

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            if self._factory is None:
                from kindfix.docker_runtime import DockerRuntime
                self._factory = DockerRuntime
            self._runtime = self._factory()
        return self._runtime


def emit(fmt: str, data: Any, as_table: Callable[[], str]) -> None:
    if fmt == "json":
        click.echo(render.as_json(data))  # ASCII: json escapes every control character
    elif fmt == "yaml":
        click.echo(render.as_yaml(data), nl=False)  # ASCII with escapes, as json
    else:
        echo(as_table())


def emit_verdict(fmt: str, result: Any, key: str, good: bool, as_table: Callable[[], str]
                 ) -> None:
    """Render a result with its verdict; exit 4 (EXIT_FINDINGS) when it is not good."""
    data = render.to_data(result)
    data[key] = good
    emit(fmt, data, as_table)
    if not good:
        sys.exit(errors.EXIT_FINDINGS)


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


def plan_text(plan: Plan, show_diffs: bool = True, empty: str = "every address is current",
               notes: str = "etcd") -> str:
    if plan.empty:
        if plan.scope:
            return f"Plan for cluster {plan.cluster}: nothing to do in scope ({plan.scope})."
        return f"Plan for cluster {plan.cluster}: nothing to do, {empty}."
    lines = [f"Plan for cluster {plan.cluster} ({len(plan.steps)} steps):"]
    for i, step in enumerate(plan.steps, 1):
        lines.append(f"  {i:2}. [{step.node}] {step.summary}")
        if show_diffs and step.diff:
            lines += ["        " + d for d in step.diff.rstrip("\n").splitlines()]
    lines += [f"  {notes}: {why}" for why in plan.explanation]
    if plan.scope:
        lines.append(f"  scope: {plan.scope}")
    return "\n".join(lines)


def interaction(fmt: str, yes: bool, plan_text: Callable[[Plan], str] = plan_text
                ) -> tuple[Callable[[str], None], Callable[[Plan], bool]]:
    """Progress lines (with elapsed seconds; on stderr unless the output is a table) and the
    confirmation before the first change, for the commands that change a cluster."""
    table = fmt == "table"
    started = time.monotonic()

    def progress(line: str) -> None:
        echo(f"{time.monotonic() - started:6.1f}s {line}", err=not table)

    def confirm(plan: Plan) -> bool:
        if table:
            echo(plan_text(plan))
        if yes:
            return True
        if not sys.stdin.isatty():
            raise errors.KindfixError("refusing to change the cluster without confirmation",
                                      hint="rerun with --yes, or --dry-run to only see the plan")
        return click.confirm("Apply this plan?", default=False)

    return progress, confirm


def checks_text(verification: Verification | None) -> list[str]:
    return [f"  {'ok  ' if c.ok else 'FAIL'} {c.node}: {c.what}"
            + (f" ({c.detail})" if c.detail and not c.ok else "")
            for c in (verification.checks if verification is not None else ())]


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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
@name_option
@click.pass_obj
def unpin(obj: Context, name: str) -> None:
    """Let Docker assign node IPs again (the address may change: run `kindfix audit`)."""
    for r in api.unpin(obj.runtime, name, echo):
        echo(f"{r.node}: unpinned, now {r.ipv4}" + (" (changed)" if r.changed else ""))


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


# Command groups in modules of their own; imported last, as they build on the helpers above.
from kindfix.cli_backup import backup, restore  # noqa: E402
from kindfix.cli_etcd import etcd  # noqa: E402

cli.add_command(etcd)
cli.add_command(backup)
cli.add_command(restore)
