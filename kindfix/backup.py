"""`kindfix backup --output DIR`: what a user wants kept before experimenting on a cluster.

Per node: /etc/kubernetes, /kind/kubeadm.conf and kubeadm-flags.env, read in one exec (tar, an
Essential package on every kind node image). Files that hold a private key (`*.key`, a PEM
PRIVATE KEY block, a kubeconfig's client-key-data) are left out unless asked for: the manifest
lists them with their sha256, so a restore knows what it cannot put back.
etcd: with quorum, one consistent snapshot through the member's JSON gateway
(`/v3/maintenance/snapshot`, the stream etcdctl's `snapshot save` writes, ending in the sha256 of
the data, checked here). Without quorum no member can make one: each member's data dir is copied
live (no writes apply without a leader) and checked by reading its file sums before and after the
copy, retried while they differ.

Everything on the host is 0600 in 0700 directories, and the manifest holds the sha256 of every
file, so a restore can refuse a backup that changed.
The node side is kindfix/scripts/backup-files.sh and backup-etcd-live.sh.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import posixpath
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kindfix import __version__, probes
from kindfix.discovery import Cluster, ClusterNode, discover, require_running
from kindfix.errors import KindfixError
from kindfix.etcd import CURL_COULD_NOT_CONNECT, LOOPBACKS
from kindfix.node import Node, run
from kindfix.nodescripts import script
from kindfix.observe import NodeSnapshot, snapshot_cluster
from kindfix.patches import CONTROL_PLANE
from kindfix.runtime import Runtime

FORMAT = 1
MANIFEST = "kindfix-backup.json"
NODE_ROOT = "/"
DATA_DIR = "/var/lib/etcd"
NODE_PATHS = ("/etc/kubernetes", "/kind/kubeadm.conf", "/var/lib/kubelet/kubeadm-flags.env")
SNAPSHOT_TIMEOUT_S = 120

_PEM_KEY = b"PRIVATE KEY-----"


def holds_private_key(path: str, content: bytes) -> bool:
    """A file whose content lets someone act as a component or sign for the cluster."""
    return path.endswith(".key") or _PEM_KEY in content or b"client-key-data" in content


@dataclass(frozen=True)
class BackedUpFile:
    node: str
    path: str  # in the node
    sha256: str
    size: int
    mode: int
    stored: str | None  # relative to the backup dir; None when left out
    omitted: str = ""  # why it was left out


@dataclass(frozen=True)
class EtcdBackup:
    node: str  # the member it came from
    kind: str  # "snapshot" (consistent, with quorum) | "data-dir" (live copy, without quorum)
    stored: str
    sha256: str
    size: int
    revision: int | None
    note: str = ""


@dataclass(frozen=True)
class Backup:
    cluster: str
    directory: str
    created: str
    files: tuple[BackedUpFile, ...]
    etcd: tuple[EtcdBackup, ...]
    include_keys: bool
    warnings: tuple[str, ...] = field(default=())

    @property
    def omitted(self) -> tuple[BackedUpFile, ...]:
        return tuple(f for f in self.files if f.stored is None)


def _safe_member_path(name: str) -> str | None:
    """A tar member's path as an absolute node path; None for anything odd (absolute, `..`)."""
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm.startswith("..") or norm in (".", ""):
        return None
    return "/" + norm


def parse_node_tar(data: bytes) -> list[tuple[str, bytes, int]]:
    """(path, content, mode) of every regular file in the archive; links and devices are not
    followed or kept (a backup holds files)."""
    out: list[tuple[str, bytes, int]] = []
    if not data:
        return out
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                path = _safe_member_path(member.name)
                if path is None or not member.isfile():
                    continue
                extracted = tar.extractfile(member)
                if extracted is not None:
                    out.append((path, extracted.read(), member.mode & 0o7777))
    except (tarfile.TarError, EOFError) as e:
        raise KindfixError(f"the archive of the node's files is unreadable: {e}") from None
    return out


def parse_snapshot_stream(text: str) -> bytes:
    """The bytes of a `/v3/maintenance/snapshot` answer: a stream of JSON objects
    {"result": {"blob": <base64>, "remaining_bytes": ...}}; the last 32 bytes of the data are
    the sha256 of what precedes them (etcd appends it; etcdutl restore checks it)."""
    decoder = json.JSONDecoder()
    i, blobs = 0, []
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        try:
            obj, i = decoder.raw_decode(text, i)
        except ValueError:
            raise KindfixError("etcd's snapshot stream is not JSON (cut off?)") from None
        if not isinstance(obj, dict):
            raise KindfixError("etcd's snapshot stream holds something other than objects")
        if "error" in obj:
            raise KindfixError(f"etcd refused the snapshot: {obj['error']}")
        blob = (obj.get("result") or {}).get("blob")
        if blob:
            blobs.append(base64.b64decode(blob))
    data = b"".join(blobs)
    if len(data) <= 32 or hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise KindfixError("etcd's snapshot does not end in the sha256 of its data "
                           "(incomplete transfer)", hint="run `kindfix backup` again")
    return data


def _private_dirs(path: Path) -> None:
    """Create path's missing parents as 0700 (mkdir(parents=True) makes them 0777 - umask)."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    for parent in reversed(missing):
        parent.mkdir(mode=0o700)


def _write_private(path: Path, content: bytes) -> None:
    _private_dirs(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())


def _fresh_directory(directory: Path) -> None:
    if directory.is_symlink():
        raise KindfixError(f"{directory} is a symbolic link", hint="name a new directory")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise KindfixError(f"{directory} exists and is not empty: a backup never mixes with "
                           "other files", hint="name a new directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)


def _node_files(node: Node, root: Path, include_keys: bool) -> list[BackedUpFile]:
    argv = ["sh", "-c", script("backup-files"), "kindfix-backup-files", NODE_ROOT,
            *(p.lstrip("/") for p in NODE_PATHS)]
    result = run(node, argv, timeout=120)
    files = []
    for path, content, mode in parse_node_tar(result.stdout):
        digest = hashlib.sha256(content).hexdigest()
        if holds_private_key(path, content) and not include_keys:
            files.append(BackedUpFile(node.name, path, digest, len(content), mode, None,
                                      "holds a private key (--include-keys to keep it)"))
            continue
        stored = f"nodes/{node.name}/files{path}"
        _write_private(root / stored, content)
        files.append(BackedUpFile(node.name, path, digest, len(content), mode, stored))
    return files


def _serving(snapshot: NodeSnapshot | None) -> probes.EtcdProbe | None:
    result = snapshot.output(probes.ETCD_PROBE) if snapshot else None
    probe = probes.parse_etcd_probe(result.text()) if result is not None else None
    return probe if probe and probe.reachable and probe.leader not in (None, "", "0") else None


def _etcd_snapshot(node: Node, root: Path, revision: int | None) -> EtcdBackup:
    pki = probes.ETCD_PKI
    argv = ["curl", "-sS", "--max-time", str(SNAPSHOT_TIMEOUT_S), "--cacert", f"{pki}/ca.crt",
            "--cert", f"{pki}/healthcheck-client.crt", "--key", f"{pki}/healthcheck-client.key",
            "-X", "POST", "-d", "{}"]
    for host in LOOPBACKS:  # an IPv6 member listens on [::1] only
        result = node.exec([*argv, f"https://{host}:2379/v3/maintenance/snapshot"],
                           timeout=SNAPSHOT_TIMEOUT_S + 10)
        if result.exit_code != CURL_COULD_NOT_CONNECT:
            break
    if not result.ok:
        raise KindfixError(f"etcd on {node.name} did not send a snapshot: "
                           f"{result.stderr.decode(errors='replace').strip()[:200]}")
    data = parse_snapshot_stream(result.text())
    stored = "etcd/snapshot.db"
    _write_private(root / stored, data)
    return EtcdBackup(node.name, "snapshot", stored, hashlib.sha256(data).hexdigest(),
                      len(data), revision, "consistent snapshot through the member's gateway")


def _etcd_data_dir(node: Node, root: Path, revision: int | None) -> EtcdBackup:
    result = run(node, ["sh", "-c", script("backup-etcd-live"), "kindfix-backup-etcd", DATA_DIR],
                 timeout=300)
    said = result.stderr.decode(errors="replace").split()
    archived = {path: hashlib.sha256(content).hexdigest()
                for path, content, _ in parse_node_tar(result.stdout)}
    if len(said) < 2 or archived.get("/member/snap/db") != said[0]:
        raise KindfixError(f"the copy of {node.name}:{DATA_DIR}/member/snap/db does not match "
                           "its sum read in the node", hint="run `kindfix backup` again")
    stored = f"etcd/{node.name}-data.tar.gz"
    _write_private(root / stored, result.stdout)
    return EtcdBackup(node.name, "data-dir", stored, hashlib.sha256(result.stdout).hexdigest(),
                      len(result.stdout), revision,
                      f"live copy of {DATA_DIR}/member without quorum: member/snap/db (the "
                      "data, no writes apply without a leader) checked by its sum; the WAL as "
                      "it was")


def _revision(snapshot: NodeSnapshot | None) -> int | None:
    result = snapshot.output(probes.ETCD_PROBE) if snapshot else None
    if result is None:
        return None
    p = probes.parse_etcd_probe(result.text())
    return p.revision if p.revision is not None else p.metrics_revision


def _manifest(backup: Backup) -> dict[str, Any]:
    from kindfix.render import to_data
    return {"format": FORMAT, "kindfix_version": __version__, **to_data(backup)}


def make_backup(cluster: Cluster, nodes: Mapping[str, Node],
                snapshots: Mapping[str, NodeSnapshot], directory: Path,
                include_keys: bool = False,
                progress: Callable[[str], None] = lambda _: None) -> Backup:
    """Back up every running node's files and etcd into a new directory."""
    _fresh_directory(directory)
    files: list[BackedUpFile] = []
    for node in cluster.kube_nodes:
        if node.running:
            progress(f"{node.name}: /etc/kubernetes, /kind/kubeadm.conf, kubeadm-flags.env")
            files += _node_files(nodes[node.name], directory, include_keys)
    etcd = _etcd_backups(cluster, nodes, snapshots, directory, progress)
    warnings = tuple(f"{n.name} is {n.state}: not backed up" for n in cluster.kube_nodes
                     if not n.running)
    backup = Backup(cluster.name, str(directory),
                    datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), tuple(files),
                    tuple(etcd), include_keys, warnings)
    _write_private(directory / MANIFEST,
                   (json.dumps(_manifest(backup), indent=2) + "\n").encode())
    return backup


def _etcd_backups(cluster: Cluster, nodes: Mapping[str, Node],
                  snapshots: Mapping[str, NodeSnapshot], directory: Path,
                  progress: Callable[[str], None]) -> list[EtcdBackup]:
    cps = [cp for cp in cluster.control_planes if cp.running]
    serving: list[ClusterNode] = [cp for cp in cps if _serving(snapshots.get(cp.name))]
    if serving:
        cp = serving[0]
        progress(f"etcd: snapshot from {cp.name} (quorum: a consistent copy of the cluster)")
        return [_etcd_snapshot(nodes[cp.name], directory, _revision(snapshots.get(cp.name)))]
    out = []
    for cp in cps:
        if nodes[cp.name].role != CONTROL_PLANE:
            continue
        progress(f"etcd: no quorum; copying {cp.name}:{DATA_DIR}/member (checked)")
        out.append(_etcd_data_dir(nodes[cp.name], directory, _revision(snapshots.get(cp.name))))
    return out


def backup_cluster(runtime: Runtime, name: str, directory: Path, include_keys: bool = False,
                   progress: Callable[[str], None] = lambda _: None) -> Backup:
    """The core call behind `kindfix backup`: discover, observe (etcd's state), back up."""
    from kindfix.api import node_factory
    runtime.ping()
    cluster = discover(runtime, name)
    require_running(cluster)
    make = node_factory(runtime)
    nodes = {n.name: make(n) for n in cluster.kube_nodes}
    snapshots = snapshot_cluster(cluster, make)
    return make_backup(cluster, nodes, snapshots, directory, include_keys, progress)
