"""Dumps: everything audit reads, on disk, with secrets redacted (layout: docs/dump-layout.md).

Users attach them to bug reports; tests audit them offline with `kindfix audit --from-dump`.
A dump is written fresh (never into a non-empty directory, never through a symlink) and read
strictly: anything malformed is one KindfixError naming the file, never a crash.

Here: writing (`collect`, `write_dump`). Reading is dump_load.py (`load_dump`, also importable
from here); what both agree on is dump_format.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from kindfix import __version__
from kindfix.discovery import ClusterNode, discover
from kindfix.dump_format import CONTAINER_NAME, FORMAT, MANIFEST, Unread
from kindfix.dump_load import load_dump
from kindfix.errors import KindfixError
from kindfix.node import Node
from kindfix.observe import NodeSnapshot, snapshot_node
from kindfix.patches import load_patches
from kindfix.redact import redact
from kindfix.runtime import (
    KIND_CLUSTER_LABEL,
    ContainerInfo,
    NetworkInfo,
    Runtime,
)

__all__ = ["FORMAT", "MANIFEST", "collect", "load_dump", "redact", "write_dump"]



def _container_json(c: ContainerInfo) -> dict[str, Any]:
    data = dataclasses.asdict(c)
    data["labels"] = dict(c.labels)
    data["networks"] = {k: dataclasses.asdict(v) for k, v in c.networks.items()}
    return data


def _fresh_target(directory: Path) -> None:
    """Refuse a symlink, a file, or a directory that already holds something (an old dump)."""
    if directory.is_symlink():
        raise KindfixError(f"{directory} is a symlink; a dump is never written through one",
                           hint="give a new directory to --output")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise KindfixError(f"{directory} exists and is not an empty directory",
                           hint="give a new directory to --output, so no old dump is mixed in")


def _write_new(path: Path, data: bytes) -> None:
    # O_EXCL|O_NOFOLLOW: the dump is built in a directory this process just made; a file that
    # is already there (or a symlink) means someone else is writing into it
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _relative_file(path: str) -> PurePosixPath:
    rel = PurePosixPath(path.lstrip("/"))
    if not path.startswith("/") or ".." in rel.parts or not rel.parts:
        raise KindfixError(f"refusing to dump the node path {path!r}: not absolute and plain")
    return rel


def _write_node(base: Path, snap: NodeSnapshot) -> None:
    for path, content in snap.files.items():
        if content is None or path.endswith(".key"):
            continue
        target = base.joinpath("files", *_relative_file(path).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_new(target, redact(content, path))
    commands = [{"argv": list(argv), "exit_code": r.exit_code,
                 "stdout": redact(r.stdout).decode(errors="replace"),
                 "stderr": redact(r.stderr).decode(errors="replace")}
                for argv, r in snap.commands.items()]
    base.mkdir(parents=True, exist_ok=True)
    _write_new(base / "commands.json", (json.dumps(commands, indent=2) + "\n").encode())


def write_dump(directory: Path, cluster: str, network: NetworkInfo | None,
               containers: Sequence[ContainerInfo], snapshots: Mapping[str, NodeSnapshot],
               unread: Sequence[Unread] = ()) -> Path:
    """Write a fresh dump: built beside `directory`, then renamed into place."""
    _fresh_target(directory)
    for c in containers:
        if not CONTAINER_NAME.fullmatch(c.name):
            raise KindfixError(f"refusing to dump container {c.name!r}: not a container name")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        manifest = {
            "format": FORMAT,
            "kindfix_version": __version__,
            "collected_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cluster": cluster,
            "provider": "docker",
            "network": dataclasses.asdict(network) if network else None,
            "containers": [_container_json(c) for c in containers],
            "unread": [dataclasses.asdict(u) for u in unread],
        }
        _write_new(staging / MANIFEST,
                   (json.dumps(manifest, indent=2, default=list) + "\n").encode())
        for snap in snapshots.values():
            if not CONTAINER_NAME.fullmatch(snap.name):
                raise KindfixError(f"refusing to dump node {snap.name!r}: not a container name")
            _write_node(staging / "nodes" / snap.name, snap)
        os.chmod(staging, 0o755)  # noqa: S103 - mkdtemp made it 0700; a dump is shared, redacted
        try:
            os.rename(staging, directory)  # replaces an empty directory, refuses anything else
        except OSError as e:
            raise KindfixError(f"cannot write the dump to {directory}: {e.strerror}",
                               hint="give a new directory to --output") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _read_stopped(runtime: Runtime, node: ClusterNode) -> NodeSnapshot:
    """A stopped container's files through the engine's archive API (`docker cp` works on it);
    no probe can run there."""
    files = {p: runtime.get_file(node.name, p) for p in load_patches().files_for(node.role)}
    return NodeSnapshot(node.name, node.role, files, {})


def collect(runtime: Runtime, name: str, directory: Path,
            make_node: Callable[[ClusterNode], Node]) -> Path:
    """Dump what can be read: running nodes in full, stopped nodes' files, every node's state;
    a node that could not be read is recorded with the reason, not a reason to dump nothing."""
    _fresh_target(directory)  # before any reading: say it at once
    containers = runtime.list_containers({KIND_CLUSTER_LABEL: name})
    cluster = discover(runtime, name)
    try:
        network: NetworkInfo | None = runtime.inspect_network(cluster.network)
    except KindfixError:
        network = None
    patches = load_patches()

    def read(node: ClusterNode) -> NodeSnapshot:
        if node.running:
            return snapshot_node(make_node(node), patches)
        return _read_stopped(runtime, node)

    snapshots: dict[str, NodeSnapshot] = {}
    unread: list[Unread] = []
    with ThreadPoolExecutor(max_workers=min(8, len(cluster.nodes))) as pool:
        futures = {n: pool.submit(read, n) for n in cluster.nodes}
        for node, future in futures.items():
            try:
                snapshots[node.name] = future.result()
            except KindfixError as e:
                unread.append(Unread(node.name, node.state, f"could not be read: {e.message}"))
                continue
            if not node.running:
                unread.append(Unread(node.name, node.state,
                                     f"was {node.state}, not running: files only, no probes"))
    return write_dump(directory, name, network, containers, snapshots, unread)


