"""Dumps: everything audit reads, on disk, with secrets redacted (layout: docs/dump-layout.md).

Users attach them to bug reports; tests audit them offline with `kindfix audit --from-dump`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kindfix import __version__
from kindfix.discovery import Cluster, ClusterNode, cluster_network, discover
from kindfix.errors import KindfixError
from kindfix.observe import NodeSnapshot
from kindfix.runtime import (
    KIND_CLUSTER_LABEL,
    ContainerInfo,
    Endpoint,
    ExecResult,
    NetworkInfo,
    Runtime,
)

FORMAT = 1
MANIFEST = "kindfix-dump.json"

_PRIVATE_KEY = re.compile(
    rb"(-----BEGIN [A-Z ]*PRIVATE KEY-----)\s.*?(-----END [A-Z ]*PRIVATE KEY-----)", re.DOTALL)
_SECRET_FIELD = re.compile(rb"^(\s*(?:- )?(?:client-key-data|token)\s*:\s*)(\S.*)$",
                           re.MULTILINE)


def redact(content: bytes) -> bytes:
    content = _PRIVATE_KEY.sub(rb"\1\nREDACTED\n\2", content)
    return _SECRET_FIELD.sub(rb"\1REDACTED", content)


def _container_json(c: ContainerInfo) -> dict[str, Any]:
    data = dataclasses.asdict(c)
    data["labels"] = dict(c.labels)
    data["networks"] = {k: dataclasses.asdict(v) for k, v in c.networks.items()}
    return data


def _container_from_json(raw: dict[str, Any]) -> ContainerInfo:
    nets = {k: Endpoint(**v) for k, v in raw.get("networks", {}).items()}
    return ContainerInfo(id=raw.get("id", ""), name=raw["name"], image=raw.get("image", ""),
                         state=raw["state"], labels=raw.get("labels", {}), networks=nets,
                         restart_policy=raw.get("restart_policy", ""))


def write_dump(directory: Path, cluster: str, network: NetworkInfo | None,
               containers: Sequence[ContainerInfo], snapshots: Mapping[str, NodeSnapshot]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "kindfix_version": __version__,
        "collected_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cluster": cluster,
        "provider": "docker",
        "network": dataclasses.asdict(network) if network else None,
        "containers": [_container_json(c) for c in containers],
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, default=list) + "\n")
    for snap in snapshots.values():
        base = directory / "nodes" / snap.name
        for path, content in snap.files.items():
            if content is None or path.endswith(".key"):
                continue
            target = base / "files" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(redact(content))
        commands = [{"argv": list(argv), "exit_code": r.exit_code,
                     "stdout": redact(r.stdout).decode(errors="replace"),
                     "stderr": redact(r.stderr).decode(errors="replace")}
                    for argv, r in snap.commands.items()]
        base.mkdir(parents=True, exist_ok=True)
        (base / "commands.json").write_text(json.dumps(commands, indent=2) + "\n")
    return directory


def collect(runtime: Runtime, name: str, directory: Path,
            snapshots: Mapping[str, NodeSnapshot]) -> Path:
    containers = runtime.list_containers({KIND_CLUSTER_LABEL: name})
    cluster = discover(runtime, name)
    try:
        network: NetworkInfo | None = runtime.inspect_network(cluster.network)
    except KindfixError:
        network = None
    return write_dump(directory, name, network, containers, snapshots)


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise KindfixError(f"{directory} is not a kindfix dump (no {MANIFEST})",
                           hint="create one with `kindfix collect --output DIR`") from None
    except ValueError as e:
        raise KindfixError(f"{path} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise KindfixError(f"{path}: unsupported dump format {manifest.get('format')!r}",
                           hint=f"this kindfix reads format {FORMAT}")
    return dict(manifest)


def _load_snapshot(base: Path, node: ClusterNode) -> NodeSnapshot:
    files: dict[str, bytes | None] = {}
    root = base / "files"
    if root.is_dir():
        for f in sorted(root.rglob("*")):
            if f.is_file():
                files["/" + f.relative_to(root).as_posix()] = f.read_bytes()
    commands: dict[tuple[str, ...], ExecResult] = {}
    cmd_file = base / "commands.json"
    if cmd_file.exists():
        for c in json.loads(cmd_file.read_text()):
            commands[tuple(c["argv"])] = ExecResult(int(c["exit_code"]), c["stdout"].encode(),
                                                    c.get("stderr", "").encode())
    return NodeSnapshot(node.name, node.role, files, commands)  # absent = missing


def load_dump(directory: Path) -> tuple[Cluster, dict[str, NodeSnapshot]]:
    manifest = _read_manifest(directory)
    containers = [_container_from_json(c) for c in manifest["containers"]]
    containers = [c for c in containers if c.labels.get(KIND_CLUSTER_LABEL) == manifest["cluster"]]
    preferred = (manifest.get("network") or {}).get("name") or "kind"
    net = cluster_network(containers, preferred)
    runtime = _DumpRuntime(containers)
    cluster = discover(runtime, manifest["cluster"], net)  # type: ignore[arg-type]
    snapshots = {}
    for node in cluster.nodes:
        base = directory / "nodes" / node.name
        if node.running and base.is_dir():
            snapshots[node.name] = _load_snapshot(base, node)
    return cluster, snapshots


class _DumpRuntime:
    """Just enough of Runtime for discovery over a dump's containers."""

    name = "dump"

    def __init__(self, containers: list[ContainerInfo]) -> None:
        self._containers = containers

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerInfo]:
        return [c for c in self._containers
                if all(k in c.labels and (v is None or c.labels[k] == v)
                       for k, v in labels.items())]
