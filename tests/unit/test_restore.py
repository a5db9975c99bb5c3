"""`kindfix restore`: a backup is read strictly (every stored file against its sha256), and the
plan puts the backup's files back with their addresses current, then etcd from its snapshot."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from kindfix import backup as bk
from kindfix import restore as rs
from kindfix.errors import KindfixError
from tests.unit.helpers_nodes import dump

DUMP = "ha-3cp-permuted"  # IPs moved since these files were written: a repair rewrites them
MANIFEST_PATH = "/etc/kubernetes/manifests/etcd.yaml"
SCHEDULER = "/etc/kubernetes/manifests/kube-scheduler.yaml"


def write_backup(tmp_path: Path, snapshot: bytes | None = b"db" * 600,
                 copies: list[tuple[str, int, bytes]] = ()) -> Path:
    """A backup directory as `kindfix backup` writes it, of the dump's first control plane's
    manifests (content from the dump) and optionally etcd."""
    cluster, snapshots, _ = dump(DUMP)
    out = tmp_path / "backup"
    out.mkdir(mode=0o700)
    cp = cluster.control_planes[0].name
    files = []
    for path in (MANIFEST_PATH, SCHEDULER, "/etc/kubernetes/pki/etcd/peer.key"):
        content = snapshots[cp].file(path) or b"-----BEGIN EC PRIVATE KEY-----\nx\n"
        digest = hashlib.sha256(content).hexdigest()
        if path.endswith(".key"):
            files.append({"node": cp, "path": path, "sha256": digest, "size": len(content),
                          "mode": 0o600, "stored": None, "omitted": "private key"})
            continue
        stored = f"nodes/{cp}/files{path}"
        (out / stored).parent.mkdir(parents=True, exist_ok=True)
        (out / stored).write_bytes(content)
        files.append({"node": cp, "path": path, "sha256": digest, "size": len(content),
                      "mode": 0o600, "stored": stored})
    etcd = []
    if snapshot is not None:
        (out / "etcd").mkdir()
        (out / "etcd/snapshot.db").write_bytes(snapshot)
        etcd.append({"node": cp, "kind": "snapshot", "stored": "etcd/snapshot.db",
                     "sha256": hashlib.sha256(snapshot).hexdigest(), "size": len(snapshot),
                     "revision": 9})
    for node, revision, db in copies:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("member/snap/db")
            info.size = len(db)
            tar.addfile(info, io.BytesIO(db))
        stored = f"etcd/{node}-data.tar.gz"
        (out / "etcd").mkdir(exist_ok=True)
        (out / stored).write_bytes(buf.getvalue())
        etcd.append({"node": node, "kind": "data-dir", "stored": stored, "revision": revision,
                     "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
                     "size": len(buf.getvalue())})
    manifest = {"format": bk.FORMAT, "cluster": cluster.name, "created": "2026-11-27T00:00:00Z",
                "files": files, "etcd": etcd, "include_keys": False}
    (out / bk.MANIFEST).write_text(json.dumps(manifest))
    return out


def test_a_backup_loads_with_its_snapshot_and_knows_what_it_left_out(tmp_path: Path) -> None:
    loaded = rs.load_backup(write_backup(tmp_path))
    assert {f.path for f in loaded.files} == {MANIFEST_PATH, SCHEDULER}
    assert loaded.omitted == ((loaded.files[0].node, "/etc/kubernetes/pki/etcd/peer.key"),)
    assert loaded.etcd_snapshot == b"db" * 600


def test_without_a_snapshot_the_newest_member_copy_is_the_source(tmp_path: Path) -> None:
    loaded = rs.load_backup(write_backup(tmp_path, None, [("a", 5, b"old"), ("b", 9, b"new"),
                                                          ("c", 9, b"tie")]))
    assert loaded.etcd_snapshot == b"new"
    assert "b's data dir copy (revision 9)" in loaded.etcd_source


@pytest.mark.parametrize("spoil", [
    "tamper", "truncate", "missing", "symlink", "escape", "manifest-json", "format", "keys"])
def test_a_spoiled_backup_is_one_error_naming_the_file(tmp_path: Path, spoil: str) -> None:
    out = write_backup(tmp_path)
    manifest = json.loads((out / bk.MANIFEST).read_text())
    stored = out / manifest["files"][0]["stored"]
    if spoil == "tamper":
        stored.write_bytes(stored.read_bytes().replace(b"etcd", b"etcX", 1))
    elif spoil == "truncate":
        (out / "etcd/snapshot.db").write_bytes(b"db")
    elif spoil == "missing":
        stored.unlink()
    elif spoil == "symlink":
        stored.unlink()
        stored.symlink_to("/etc/hostname")
    elif spoil == "escape":
        manifest["files"][0]["stored"] = "../../etc/passwd"
    elif spoil == "manifest-json":
        (out / bk.MANIFEST).write_text('{"format": 1, "files": [')
    elif spoil == "format":
        manifest["format"] = 99
    elif spoil == "keys":
        del manifest["files"][0]["sha256"]
    if spoil in ("escape", "format", "keys"):
        (out / bk.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(KindfixError) as err:
        rs.load_backup(out)
    assert str(out) in err.value.message
    assert "\n" not in err.value.message


def test_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(KindfixError, match="is not a kindfix backup"):
        rs.load_backup(tmp_path)


def test_the_plan_puts_files_back_with_current_addresses_then_etcd(tmp_path: Path) -> None:
    cluster, snapshots, _ = dump(DUMP)
    cp = cluster.control_planes[0].name
    loaded = rs.load_backup(write_backup(tmp_path))
    # the scheduler manifest was edited since the backup; etcd.yaml is as backed up
    edited = snapshots[cp].file(SCHEDULER) + b"# edited\n"
    live = {**snapshots, cp: replace(snapshots[cp], files={**snapshots[cp].files,
                                                          SCHEDULER: edited})}
    plan = rs.plan_restore(cluster, loaded, live)
    writes = {s.path: s for s in plan.steps if s.kind == "write-file" and s.node == cp}
    assert writes[SCHEDULER].content == snapshots[cp].file(SCHEDULER)  # byte for byte
    assert "# edited" in writes[SCHEDULER].diff
    kinds = [s.kind for s in plan.steps]
    assert "regen-cert" in kinds  # the dump's etcd certificates do not cover the moved IPs
    etcd = [s for s in plan.steps if s.kind == "etcd"]
    assert len(etcd) == 1 and etcd[0].phase == rs.ETCD_PHASE
    assert etcd[0].content == loaded.etcd_snapshot
    after = kinds[kinds.index("etcd"):]
    assert after.count("restart-pod") == 3 * len(cluster.control_planes)
    assert after.count("restart-kubelet") == len(cluster.kube_nodes)
    assert plan.etcd_strategy == rs.ETCD_PHASE


def test_files_only_when_asked_and_nothing_when_they_match(tmp_path: Path) -> None:
    cluster, snapshots, _ = dump("ha-3cp-healthy")
    cp = cluster.control_planes[0].name
    out = tmp_path / "b"
    out.mkdir()
    content = snapshots[cp].file(SCHEDULER)
    assert content is not None
    (out / "f").write_bytes(content)
    (out / bk.MANIFEST).write_text(json.dumps({
        "format": bk.FORMAT, "cluster": cluster.name, "created": "x", "etcd": [],
        "files": [{"node": cp, "path": SCHEDULER, "stored": "f", "mode": 0o644,
                   "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}]}))
    plan = rs.plan_restore(cluster, rs.load_backup(out), snapshots, with_etcd=False)
    assert plan.empty


def test_a_backup_of_other_nodes_is_refused(tmp_path: Path) -> None:
    cluster, snapshots, _ = dump(DUMP)
    loaded = rs.load_backup(write_backup(tmp_path))
    loaded = replace(loaded, files=tuple(replace(f, node="ghost-control-plane")
                                         for f in loaded.files))
    with pytest.raises(KindfixError, match="does not have: ghost-control-plane"):
        rs.plan_restore(cluster, loaded, snapshots)
