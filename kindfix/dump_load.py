"""Reading a dump strictly: anything malformed (or a symlink, or a stopped node a live audit
would refuse) is one KindfixError naming the file, never a crash."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kindfix.discovery import Cluster, ClusterNode, cluster_network, discover
from kindfix.dump_format import CONTAINER_NAME, FORMAT, MANIFEST
from kindfix.errors import KindfixError
from kindfix.observe import NodeSnapshot
from kindfix.patches import LOAD_BALANCER
from kindfix.runtime import (
    KIND_CLUSTER_LABEL,
    ContainerInfo,
    Endpoint,
    ExecResult,
)


def _bad(path: Path, what: str, hint: str | None = None) -> KindfixError:
    return KindfixError(f"{path}: {what}",
                        hint=hint or "this is not a dump kindfix wrote; collect a new one with "
                                     "`kindfix collect --output DIR`")


def _read_json(path: Path) -> Any:
    if path.is_symlink():
        raise _bad(path, "is a symlink; a dump holds none")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise _bad(path, f"cannot be read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise _bad(path, "is not UTF-8 JSON") from None
    except RecursionError:
        raise _bad(path, "is not valid JSON: nested too deep") from None
    except ValueError as e:
        raise _bad(path, f"is not valid JSON: {e}") from None


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists() and not path.is_symlink():
        raise KindfixError(f"{directory} is not a kindfix dump (no {MANIFEST})",
                           hint="create one with `kindfix collect --output DIR`")
    manifest = _read_json(path)
    if not isinstance(manifest, dict):
        raise _bad(path, f"is not a JSON object but {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise KindfixError(f"{path}: unsupported dump format {manifest.get('format')!r}",
                           hint=f"this kindfix reads format {FORMAT}")
    for key, kind in (("cluster", str), ("containers", list)):
        if key not in manifest:
            raise _bad(path, f"has no {key!r}")
        if not isinstance(manifest[key], kind):
            raise _bad(path, f"{key!r} is not a {kind.__name__}")
    if not isinstance(manifest.get("network"), (dict, type(None))):
        raise _bad(path, "'network' is neither an object nor null")
    if not isinstance(manifest.get("unread", []), list):
        raise _bad(path, "'unread' is not a list")
    return manifest


def _str_map(raw: Any, path: Path, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise _bad(path, f"{where} is not an object of strings")
    return raw


def _endpoint(raw: Any, path: Path, where: str) -> Endpoint:
    fields = {f.name: f for f in dataclasses.fields(Endpoint)}
    if not isinstance(raw, dict) or set(raw) - set(fields) or not isinstance(
            raw.get("network"), str):
        raise _bad(path, f"{where} is not an endpoint object ({', '.join(fields)})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "aliases":  # a list in JSON, a tuple in the dataclass
            if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                raise _bad(path, f"{where}.aliases is not a list of strings")
            values[name] = tuple(value)
            continue
        if not isinstance(value, (str, type(None))):
            raise _bad(path, f"{where}.{name} is neither a string nor null")
        values[name] = value
    values.setdefault("ipv4", None)
    values.setdefault("ipv6", None)
    return Endpoint(**values)


def _container_from_json(raw: Any, path: Path | None = None, index: int = 0) -> ContainerInfo:
    path = path or Path(MANIFEST)
    where = f"containers[{index}]"
    if not isinstance(raw, dict):
        raise _bad(path, f"{where} is not an object")
    for key in ("name", "state"):
        if not isinstance(raw.get(key), str):
            raise _bad(path, f"{where} has no {key!r} string")
    name = raw["name"]
    if not CONTAINER_NAME.fullmatch(name):
        raise _bad(path, f"{where}: {name!r} is not a container name")
    for key in ("id", "image", "restart_policy"):
        if not isinstance(raw.get(key, ""), str):
            raise _bad(path, f"{where} ({name}): {key!r} is not a string")
    labels = _str_map(raw.get("labels", {}), path, f"{where} ({name}) labels")
    nets = raw.get("networks", {})
    if not isinstance(nets, dict):
        raise _bad(path, f"{where} ({name}) networks is not an object")
    networks = {str(k): _endpoint(v, path, f"{where} ({name}) networks.{k}")
                for k, v in nets.items()}
    started = raw.get("started_at")
    if started is not None and (isinstance(started, bool) or not isinstance(started, int | float)):
        raise _bad(path, f"{where} ({name}): 'started_at' is not a number")
    return ContainerInfo(id=raw.get("id", ""), name=name, image=raw.get("image", ""),
                         state=raw["state"], labels=labels, networks=networks,
                         restart_policy=raw.get("restart_policy", ""),
                         started_at=None if started is None else float(started))


def _command(raw: Any, path: Path, index: int) -> tuple[tuple[str, ...], ExecResult]:
    where = f"entry {index}"
    if not isinstance(raw, dict):
        raise _bad(path, f"{where} is not an object")
    argv = raw.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise _bad(path, f"{where} has no 'argv' list of strings")
    code = raw.get("exit_code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise _bad(path, f"{where} has no integer 'exit_code'")
    out, err = raw.get("stdout"), raw.get("stderr", "")
    if not isinstance(out, str) or not isinstance(err, str):
        raise _bad(path, f"{where} has no 'stdout'/'stderr' strings")
    return tuple(argv), ExecResult(code, out.encode(), err.encode())


def _read_files(root: Path) -> dict[str, bytes | None]:
    """Every regular file under root; a symlink (which could point anywhere on this host) or
    anything else is refused."""
    files: dict[str, bytes | None] = {}
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise _bad(root, "is not a directory")
    for current, dirs, names in os.walk(root):  # os.walk does not follow symlinked dirs
        here = Path(current)
        for entry in sorted(dirs + names):
            path = here / entry
            if path.is_symlink():
                raise _bad(path, "is a symlink; a dump holds none")
            if entry in names and not path.is_file():
                raise _bad(path, "is not a regular file")
        for entry in sorted(names):
            try:
                files["/" + (here / entry).relative_to(root).as_posix()] = (
                    here / entry).read_bytes()
            except OSError as e:
                raise _bad(here / entry, f"cannot be read: {e.strerror}") from None
    return files


def _load_snapshot(base: Path, node: ClusterNode) -> NodeSnapshot:
    if base.is_symlink() or not base.is_dir():
        raise _bad(base, f"is missing: node {node.name} was running, so its files and probes "
                         "belong there")
    cmd_file = base / "commands.json"
    if not cmd_file.exists() and not cmd_file.is_symlink():
        raise _bad(cmd_file, f"is missing: the probes of running node {node.name}")
    raw = _read_json(cmd_file)
    if not isinstance(raw, list):
        raise _bad(cmd_file, "is not a JSON list")
    commands = dict(_command(c, cmd_file, i) for i, c in enumerate(raw))
    # a file absent from the dump was absent from the node
    return NodeSnapshot(node.name, node.role, _read_files(base / "files"), commands)


def _refuse_unreadable(cluster: Cluster, manifest: Mapping[str, Any], path: Path) -> None:
    """What a live audit refuses (a stopped node, one without an address, one that could not be
    read) a dump audit refuses too, naming the node's recorded state: never a silent pass."""
    unread: dict[str, str] = {}
    for i, u in enumerate(manifest.get("unread", [])):
        if not isinstance(u, dict) or not isinstance(u.get("node"), str):
            raise _bad(path, f"unread[{i}] is not an object with a 'node'")
        unread[u["node"]] = str(u.get("reason", "not read"))
    for node in cluster.nodes:
        if not node.running and node.role != LOAD_BALANCER:
            raise KindfixError(
                f"{path}: node {node.name} was {node.state} when the dump was collected, "
                "not running", hint="a live audit refuses it too: start the node "
                f"(`docker start {node.name}`), then collect again")
        if node.running and node.name in unread:
            raise KindfixError(f"{path}: node {node.name} {unread[node.name]}",
                               hint="collect again once the node answers")
        if node.running and node.role != LOAD_BALANCER and not node.ips():
            raise KindfixError(f"{path}: node {node.name} had no address on network "
                               f"{cluster.network!r}", hint="a live audit refuses it too")


def load_dump(directory: Path) -> tuple[Cluster, dict[str, NodeSnapshot]]:
    manifest = _read_manifest(directory)
    path = directory / MANIFEST
    containers = [_container_from_json(c, path, i) for i, c in enumerate(manifest["containers"])]
    names = [c.name for c in containers]
    if len(set(names)) != len(names):
        raise _bad(path, "lists a container twice")
    ours = [c for c in containers if c.labels.get(KIND_CLUSTER_LABEL) == manifest["cluster"]]
    if not ours:
        raise _bad(path, f"no container belongs to its cluster {manifest['cluster']!r}")
    preferred = (manifest.get("network") or {}).get("name") or "kind"
    net = cluster_network(ours, preferred if isinstance(preferred, str) else "kind")
    cluster = discover(_DumpRuntime(ours), manifest["cluster"], net)  # type: ignore[arg-type]
    _refuse_unreadable(cluster, manifest, path)
    snapshots = {}
    for node in cluster.nodes:
        if node.running:
            snapshots[node.name] = _load_snapshot(directory / "nodes" / node.name, node)
    return cluster, snapshots


class _DumpRuntime:
    """Just enough of Runtime for discovery over a dump's containers (discovery asks
    `inspect_container` only when no container matched, which load_dump rules out first)."""

    name = "dump"

    def __init__(self, containers: list[ContainerInfo]) -> None:
        self._containers = containers

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerInfo]:
        return [c for c in self._containers
                if all(k in c.labels and (v is None or c.labels[k] == v)
                       for k, v in labels.items())]

    def inspect_container(self, name: str) -> ContainerInfo:
        for c in self._containers:
            if c.name == name:
                return c
        raise KindfixError(f"no container named {name} in the dump")

    def ping(self) -> None:
        return None
