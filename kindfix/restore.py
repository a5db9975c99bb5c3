"""`kindfix restore DIR`: put a `kindfix backup` back onto the same cluster.

Files go back byte for byte (with the same node-side backups, journal, compare-and-swap writes
and lock as a repair), the pods that read them restart, and etcd is restored through the
repair's own snapshot-restore path (every member stopped and its data copied first) from the
backup's snapshot, or, for a backup made without quorum, from the backend of the member copy
with the highest revision. Files left out of the backup (private keys) stay as they are.

Loading is strict: a backup whose manifest or any stored file does not match its recorded
sha256 is refused, naming the file, before anything is planned.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kindfix.audit import audit
from kindfix.backup import FORMAT, MANIFEST
from kindfix.discovery import Cluster, discover, require_running
from kindfix.errors import KindfixError
from kindfix.lock import cluster_lock
from kindfix.names import validate_cluster_name
from kindfix.observe import NodeSnapshot, snapshot_cluster
from kindfix.plan import (
    Plan,
    Step,
    content_id,
    etcd_target,
    make_plan,
    restart_steps,
    unified_diff,
)
from kindfix.recovery.strategy import RESTORE_BACKUP
from kindfix.rewrite import FileChange
from kindfix.runtime import Runtime
from kindfix.steps import EtcdStrategy, StepKind
from kindfix.verify import Verification

# the etcd step's strategy: snapshot restore from the backup (ValueError at import, should the
# recovery's name for it and the plan's vocabulary ever differ)
ETCD_PHASE = EtcdStrategy(RESTORE_BACKUP)


@dataclass(frozen=True)
class StoredFile:
    node: str
    path: str
    content: bytes
    mode: int


@dataclass(frozen=True)
class LoadedBackup:
    cluster: str
    directory: Path
    created: str
    files: tuple[StoredFile, ...]
    omitted: tuple[tuple[str, str], ...]  # (node, path) of files left out (private keys)
    etcd_snapshot: bytes | None  # what every member is restored from
    etcd_source: str  # where it came from, for the plan


def _fail(path: Path, why: str) -> KindfixError:
    return KindfixError(f"{path}: {why}", hint="a backup is used only as `kindfix backup` "
                        "wrote it; make a new one")


def _read_stored(directory: Path, rel: Any, sha256: Any, size: Any = None) -> bytes:
    if not isinstance(rel, str) or not rel or posixpath.isabs(rel) or ".." in rel.split("/"):
        raise _fail(directory / MANIFEST, f"names a stored file outside the backup: {rel!r}")
    path = directory / rel
    if path.is_symlink() or not path.is_file():
        raise _fail(path, "is missing (or not a regular file)")
    content = path.read_bytes()
    if hashlib.sha256(content).hexdigest() != sha256 or (size is not None and
                                                         len(content) != size):
        raise _fail(path, "does not match the sha256 recorded in the backup's manifest")
    return content


def _manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise KindfixError(f"{directory} is not a kindfix backup (no {MANIFEST})",
                           hint="make one with `kindfix backup --output DIR`")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise _fail(path, f"is not valid JSON: {e}") from None
    found = data.get("format") if isinstance(data, dict) else None
    if found != FORMAT:
        raise _fail(path, f"unsupported backup format {found!r} (this kindfix reads {FORMAT})")
    return dict(data)


def _best_data_dir_backend(directory: Path, copies: list[dict[str, Any]]) -> tuple[bytes, str]:
    """member/snap/db of the member copy with the highest revision (tie: the first)."""
    ranked = sorted(enumerate(copies), key=lambda ic: (-(ic[1].get("revision") or -1), ic[0]))
    _, best = ranked[0]
    archive = _read_stored(directory, best.get("stored"), best.get("sha256"), best.get("size"))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            member = tar.extractfile("member/snap/db")
            if member is None:
                raise KeyError("member/snap/db")
            return member.read(), f"{best.get('node')}'s data dir copy (revision " \
                f"{best.get('revision', '?')})"
    except (tarfile.TarError, KeyError, EOFError):
        raise _fail(directory / str(best.get("stored")), "holds no member/snap/db") from None


def load_backup(directory: Path) -> LoadedBackup:
    data = _manifest(directory)
    where = directory / MANIFEST
    try:
        files, omitted = [], []
        for f in data["files"]:
            if f.get("stored") is None:
                omitted.append((str(f["node"]), str(f["path"])))
                continue
            content = _read_stored(directory, f["stored"], f["sha256"], f.get("size"))
            files.append(StoredFile(str(f["node"]), str(f["path"]), content, int(f["mode"])))
        etcd = list(data.get("etcd") or [])
        snapshot, source = None, "none in the backup"
        snaps = [e for e in etcd if e.get("kind") == "snapshot"]
        copies = [e for e in etcd if e.get("kind") == "data-dir"]
        if snaps:
            snapshot = _read_stored(directory, snaps[0]["stored"], snaps[0]["sha256"],
                                    snaps[0].get("size"))
            source = f"the snapshot taken from {snaps[0].get('node')} (revision " \
                f"{snaps[0].get('revision', '?')})"
        elif copies:
            snapshot, source = _best_data_dir_backend(directory, copies)
        return LoadedBackup(str(data["cluster"]), directory, str(data.get("created", "?")),
                            tuple(files), tuple(omitted), snapshot, source)
    except (KeyError, TypeError, ValueError) as e:
        raise _fail(where, f"is incomplete or malformed ({type(e).__name__}: {e})") from None


def _merged(live: Mapping[str, NodeSnapshot], backup: LoadedBackup
            ) -> dict[str, NodeSnapshot]:
    """The cluster as it would look with the backup's files back (probes as observed now)."""
    out = dict(live)
    for f in backup.files:
        if f.node in out:
            out[f.node] = replace(out[f.node], files={**out[f.node].files, f.path: f.content})
    return out


def plan_restore(cluster: Cluster, backup: LoadedBackup, live: Mapping[str, NodeSnapshot],
                 with_etcd: bool = True) -> Plan:
    """The backup's files back, then as a repair would leave them: the addresses in them follow
    the nodes' current IPs (a backup made before Docker moved the nodes is still correct data,
    with stale addresses), certificates that do not cover the node are made anew, the pods that
    read changed files restart. etcd gets the backup's data, every member at its current peer
    URL, and what caches cluster state restarts after it (upstream's restore guide)."""
    names = {n.name for n in cluster.nodes}
    missing = sorted({f.node for f in backup.files} - names)
    if missing:
        raise KindfixError(f"the backup holds nodes cluster {cluster.name} does not have: "
                           f"{', '.join(missing)}", hint="a backup goes back onto the cluster "
                           "it was made from")
    merged = _merged(live, backup)
    repair = make_plan(cluster, merged, audit(cluster, merged))
    final = {(f.node, f.path): f.content for f in backup.files}
    fixed = set()
    for s in repair.steps:
        if s.kind == StepKind.WRITE_FILE:
            final[(s.node, s.path)] = s.content
            fixed.add((s.node, s.path))
    files = []
    for (node, path), content in final.items():
        now = live[node].file(path) if node in live else None
        if now == content:
            continue
        how = "from the backup, its addresses current" if (node, path) in fixed else \
            "from the backup"
        change = FileChange(node, path, now or b"", content, (how,))
        files.append(Step(f"restore:{node}:{path}:{content_id(now)}>{content_id(content)}",
                          StepKind.WRITE_FILE, node, f"restore {path} ({how})",
                          unified_diff(change), path, content))
    certs = [s for s in repair.steps if s.kind == StepKind.REGEN_CERT]
    steps = [*files, *certs, *restart_steps(files, certs)]
    strategy = EtcdStrategy.NONE
    if with_etcd and backup.etcd_snapshot is not None and cluster.control_planes:
        strategy = ETCD_PHASE
        steps.append(Step(f"etcd:restore:{content_id(backup.etcd_snapshot)}:"
                          f"{etcd_target(cluster)}", StepKind.ETCD,
                          cluster.control_planes[0].name,
                          f"etcd: restore every member from {backup.etcd_source} at its "
                          "current peer URL (each member is stopped and its data copied "
                          "first; etcd gets a new cluster ID)",
                          phase=ETCD_PHASE, content=backup.etcd_snapshot))
        for cp in cluster.control_planes:
            for pod in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
                steps.append(Step(f"restart:{cp.name}:{pod}:after-etcd-restore",
                                  StepKind.RESTART_POD, cp.name,
                                  f"restart {pod} (etcd's data went back to the backup)",
                                  phase=pod))
        for n in cluster.kube_nodes:
            steps.append(Step(f"kubelet:{n.name}:after-etcd-restore", StepKind.RESTART_KUBELET,
                              n.name, "restart the kubelet (it watches the restored state)"))
    steps += [s for s in repair.steps if s.kind in (StepKind.START_LB, StepKind.FIX_LB)]
    explanation = [f"made {backup.created}: {len(backup.files)} files, {len(files)} differ "
                   "from the cluster"]
    if backup.omitted:
        explanation.append(f"{len(backup.omitted)} file(s) with private keys are not in the "
                           "backup and stay as they are")
    return Plan(cluster.name, tuple(steps), strategy, tuple(explanation))


@dataclass(frozen=True)
class RestoreOutcome:
    cluster: str
    backup: str
    plan: Plan
    omitted: tuple[tuple[str, str], ...]
    dry_run: bool = False
    run_id: str | None = None
    applied: tuple[str, ...] = ()
    verification: Verification | None = None

    __render_properties__ = ("healthy",)

    @property
    def healthy(self) -> bool:
        return self.verification is not None and self.verification.healthy


def restore(runtime: Runtime, directory: Path, *, name: str | None = None,
            dry_run: bool = False, with_etcd: bool = True,
            confirm: Callable[[Plan], bool] = lambda _: True,
            progress: Callable[[str], None] = lambda _: None,
            verify_wait: float = 60) -> RestoreOutcome:
    """The core call behind `kindfix restore DIR`."""
    from kindfix import api
    backup = load_backup(directory)
    name = name or backup.cluster
    validate_cluster_name(name)
    if name != backup.cluster:
        raise KindfixError(f"{directory} is a backup of cluster {backup.cluster!r}, not {name!r}",
                           hint="a backup goes back onto the cluster it was made from")
    with cluster_lock(runtime, name, "restore", progress):
        runtime.ping()
        cluster = discover(runtime, name)
        require_running(cluster)
        make = api.node_factory(runtime)
        nodes = {n.name: make(n) for n in cluster.nodes}
        snapshots = snapshot_cluster(cluster, make)  # etcd.yaml etc.: what the etcd step reads
        wanted: dict[str, list[str]] = {}
        for f in backup.files:
            wanted.setdefault(f.node, []).append(f.path)
        for node, paths in wanted.items():  # what each write compares-and-swaps against
            if node in snapshots:
                current = nodes[node].read_files(paths)
                snapshots[node] = replace(snapshots[node],
                                          files={**snapshots[node].files, **current})
        plan = plan_restore(cluster, backup, snapshots, with_etcd)
        if dry_run:
            return RestoreOutcome(name, str(directory), plan, backup.omitted, dry_run=True)
        done = api.apply_and_verify(runtime, name, cluster, nodes, snapshots, plan, None,
                                    confirm=confirm, progress=progress,
                                    verify_wait=verify_wait, min_revision=0, what="restore")
        return RestoreOutcome(name, str(directory), plan, backup.omitted, False, done.run_id,
                              done.applied, done.verification)
