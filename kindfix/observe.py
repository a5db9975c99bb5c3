"""Gathers, per node, the raw text audit needs: files in one batched exec, probes beside it.

A `NodeSnapshot` is exactly what a dump stores, so audit runs the same on a live cluster and on
`--from-dump`. Nodes are read concurrently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kindfix import probes
from kindfix.discovery import Cluster, ClusterNode
from kindfix.errors import CommandError, KindfixError
from kindfix.node import Node
from kindfix.patches import CONTROL_PLANE, Patches, load_patches
from kindfix.runtime import ExecResult

Argv = tuple[str, ...]


@dataclass(frozen=True)
class NodeSnapshot:
    name: str
    role: str
    files: Mapping[str, bytes | None]
    commands: Mapping[Argv, ExecResult] = field(default_factory=dict)

    def file(self, path: str) -> bytes | None:
        return self.files.get(path)

    def output(self, argv: Sequence[str]) -> ExecResult | None:
        """What `argv` printed. A node script (`sh -c TEXT $0 ARGS...`) is also found by its $0
        and arguments: a dump made by an older kindfix recorded an older text of the script."""
        found = self.commands.get(tuple(argv))
        if found is not None or tuple(argv[:2]) != ("sh", "-c") or len(argv) < 4:
            return found
        return next((result for recorded, result in self.commands.items()
                     if recorded[:2] == ("sh", "-c") and recorded[3:] == tuple(argv[3:])), None)


def probes_for(role: str) -> tuple[Argv, ...]:
    # only what audit reads: every exec costs ~50 ms of engine CPU on every node at once
    if role == CONTROL_PLANE:
        return (probes.ETCD_PROBE,)
    return ()


def read_node_files(node: Node, paths: tuple[str, ...]) -> dict[str, bytes | None]:
    """node.read_files, with the node named when a path exists but cannot be read (a directory
    where kind puts a file, or a file root cannot read): one line naming node and file."""
    try:
        return node.read_files(paths)
    except CommandError:
        raise  # names the node already (docker exec <node> ...)
    except KindfixError as e:
        raise KindfixError(f"{node.name}:{e.message}",
                           hint="kind puts a regular file there; a directory or an unreadable "
                                "file is not something kindfix can audit or repair") from e


def snapshot_node(node: Node, patches: Patches, pool: ThreadPoolExecutor | None = None
                  ) -> NodeSnapshot:
    """Files in one exec, each probe in one exec, all at once when a pool is given."""
    paths = patches.files_for(node.role)
    wanted = probes_for(node.role)
    if pool is None:
        files = read_node_files(node, paths)
        commands = {argv: node.exec(argv) for argv in wanted}
    else:
        files_f = pool.submit(read_node_files, node, paths)
        cmd_f = {argv: pool.submit(node.exec, argv) for argv in wanted}
        files = files_f.result()
        commands = {argv: f.result() for argv, f in cmd_f.items()}
    return NodeSnapshot(node.name, node.role, files, commands)


def snapshot_cluster(
    cluster: Cluster,
    make_node: Callable[[ClusterNode], Node],
    patches: Patches | None = None,
) -> dict[str, NodeSnapshot]:
    """Snapshots of every running node, read concurrently."""
    patches = patches or load_patches()
    running = [n for n in cluster.nodes if n.running]
    if not running:
        return {}
    workers = min(32, 3 * len(running))
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            ThreadPoolExecutor(max_workers=min(16, len(running))) as outer:
        futures = {
            n.name: outer.submit(snapshot_node, make_node(n), patches, pool) for n in running
        }
        return {name: f.result() for name, f in futures.items()}
