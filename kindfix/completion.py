"""Shell completion through click: `eval "$(_KINDFIX_COMPLETE=bash_source kindfix)"` (zsh_source,
fish_source likewise). Subcommands and options come from click; values that name things in the
engine (cluster names) are asked from it, and a completion never fails loudly: an engine that does
not answer completes nothing.
"""

from __future__ import annotations

from typing import Any

import click
from click.shell_completion import CompletionItem

from kindfix.discovery import list_clusters
from kindfix.errors import KindfixError


def _runtime(ctx: click.Context) -> Any:
    obj = ctx.find_root().obj
    if obj is None:  # the group's callback does not run while completing
        from kindfix.cli import Context
        obj = Context()
    return obj.runtime


def cluster_names(ctx: click.Context, _param: click.Parameter, incomplete: str
                  ) -> list[CompletionItem]:
    try:
        names = list_clusters(_runtime(ctx))
    except (KindfixError, OSError, ImportError, ValueError):
        return []
    except Exception:  # the docker SDK raises its own types; completion stays quiet
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def node_names(ctx: click.Context, _param: click.Parameter, incomplete: str
               ) -> list[CompletionItem]:
    """The nodes of the cluster named by --name (or the default one)."""
    from kindfix.discovery import default_cluster_name
    from kindfix.runtime import KIND_CLUSTER_LABEL
    cluster = ctx.params.get("name") or default_cluster_name()
    try:
        containers = _runtime(ctx).list_containers({KIND_CLUSTER_LABEL: cluster})
    except Exception:  # as cluster_names: completion stays quiet
        return []
    return [CompletionItem(c.name) for c in sorted(containers, key=lambda c: c.name)
            if c.name.startswith(incomplete)]
