"""What every command module uses: the --name and -o options, the `Context` that holds the
runtime, output (escaped text, table / json / yaml, verdict exit codes), the plan as text and the
confirmation before the first change."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from kindfix import completion, errors, render
from kindfix.discovery import default_cluster_name
from kindfix.names import validate_cluster_name
from kindfix.plan import Plan
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
