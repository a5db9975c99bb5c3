"""`kindfix backup`: its node scripts run for real (host sh, tar, sha256sum) on a node-shaped tmp
tree; etcd's snapshot stream answered as etcd's gateway sends it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from kindfix import backup as bk
from kindfix.errors import KindfixError
from kindfix.node import ContainerNode
from kindfix.runtime import ExecResult
from tests.unit.helpers_nodes import LocalRuntime, dump

KEY = b"-----BEGIN RSA PRIVATE KEY-----\nMIIEsecretsecret\n-----END RSA PRIVATE KEY-----\n"
KUBECONFIG = (b"apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n"
              b"    client-certificate-data: Q0VSVA==\n    client-key-data: U0VDUkVUS0VZ\n")


def snapshot_stream(data: bytes, chunk: int = 1000) -> bytes:
    """What POST /v3/maintenance/snapshot answers: the db, then its sha256, in base64 chunks
    of JSON objects (grpc-gateway's server-streaming shape)."""
    full = data + hashlib.sha256(data).digest()
    parts = [full[i:i + chunk] for i in range(0, len(full), chunk)]
    return b"".join(json.dumps({"result": {"remaining_bytes": str(len(full) - (i + 1) * chunk),
                                           "blob": base64.b64encode(p).decode()}}).encode()
                    + b"\n" for i, p in enumerate(parts))


class NodeRuntime(LocalRuntime):
    """The host's tools, except etcd's gateway, answered with `stream`."""

    def __init__(self, stream: bytes | None = None) -> None:
        super().__init__()
        self.stream = stream

    def exec(self, container: str, argv: Sequence[str], stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        if argv[0] == "curl":
            self.calls.append(tuple(argv))
            if self.stream is None:
                return ExecResult(28, b"", b"curl: (28) Operation timed out")
            return ExecResult(0, self.stream, b"")
        return super().exec(container, argv, stdin, timeout)


@pytest.fixture
def node_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "node"
    files = {
        "etc/kubernetes/admin.conf": KUBECONFIG,
        "etc/kubernetes/manifests/etcd.yaml": b"apiVersion: v1\nkind: Pod\n",
        "etc/kubernetes/pki/ca.crt": b"-----BEGIN CERTIFICATE-----\nMIIB\n"
                                     b"-----END CERTIFICATE-----\n",
        "etc/kubernetes/pki/ca.key": KEY,
        "etc/kubernetes/pki/sa.pub": b"public\n",
        "kind/kubeadm.conf": b"apiVersion: kubeadm.k8s.io/v1beta3\n",
        "var/lib/etcd/member/snap/db": b"bolt" * 1000,
        "var/lib/etcd/member/wal/0.wal": b"wal",
        "var/lib/etcd/member/wal/0.tmp": b"\0" * 100,
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    (root / "etc/kubernetes/pki/ca.crt").chmod(0o640)
    (root / "etc/kubernetes/secret-link").symlink_to("/etc/shadow")
    monkeypatch.setattr(bk, "NODE_ROOT", str(root))
    monkeypatch.setattr(bk, "DATA_DIR", str(root / "var/lib/etcd"))
    return root


def _backup(tmp_path: Path, dump_name: str, stream: bytes | None,
            include_keys: bool = False) -> tuple[bk.Backup, Path]:
    cluster, snapshots, _ = dump(dump_name)
    cp = cluster.control_planes[0]
    single = cluster.__class__(cluster.name, cluster.network, (cp,))
    runtime = NodeRuntime(stream)
    out = tmp_path / "backup"
    nodes = {cp.name: ContainerNode(runtime, cp.name, cp.role)}  # type: ignore[arg-type]
    return bk.make_backup(single, nodes, {cp.name: snapshots[cp.name]}, out, include_keys), out


def _modes(directory: Path) -> set[str]:
    return {oct(stat.S_IMODE(p.stat().st_mode)) for p in [directory, *directory.rglob("*")]}


def test_with_quorum_files_and_a_checked_snapshot_private_keys_left_out(
        node_root: Path, tmp_path: Path) -> None:
    db = b"etcd-backend" * 500
    result, out = _backup(tmp_path, "ha-3cp-healthy", snapshot_stream(db))
    stored = {f.path: f for f in result.files}
    assert set(stored) == {"/etc/kubernetes/admin.conf", "/etc/kubernetes/manifests/etcd.yaml",
                           "/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key",
                           "/etc/kubernetes/pki/sa.pub", "/kind/kubeadm.conf"}
    assert stored["/etc/kubernetes/pki/ca.key"].stored is None
    assert stored["/etc/kubernetes/admin.conf"].stored is None  # client-key-data
    assert stored["/etc/kubernetes/pki/ca.crt"].mode == 0o640
    for f in result.files:
        if f.stored:
            content = (out / f.stored).read_bytes()
            assert hashlib.sha256(content).hexdigest() == f.sha256
            assert content == (node_root / f.path.lstrip("/")).read_bytes()
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert b"PRIVATE KEY" not in everything and b"U0VDUkVUS0VZ" not in everything
    (snap,) = result.etcd
    assert snap.kind == "snapshot"
    assert (out / snap.stored).read_bytes() == db + hashlib.sha256(db).digest()
    assert _modes(out) == {"0o700", "0o600"}
    manifest = json.loads((out / bk.MANIFEST).read_text())
    assert manifest["format"] == bk.FORMAT
    assert {f["path"] for f in manifest["files"]} == set(stored)


def test_include_keys_keeps_them(node_root: Path, tmp_path: Path) -> None:
    result, out = _backup(tmp_path, "ha-3cp-healthy", snapshot_stream(b"x" * 100),
                          include_keys=True)
    assert not result.omitted
    assert (out / f"nodes/{result.files[0].node}/files/etc/kubernetes/pki/ca.key"
            ).read_bytes() == KEY
    assert _modes(out) == {"0o700", "0o600"}


def test_without_quorum_each_data_dir_is_copied_and_checked(node_root: Path,
                                                            tmp_path: Path) -> None:
    result, out = _backup(tmp_path, "ha-3cp-permuted", None)
    (copy,) = result.etcd
    assert copy.kind == "data-dir"
    with tarfile.open(out / copy.stored) as tar:
        names = sorted(tar.getnames())
        db = tar.extractfile("member/snap/db")
        assert db is not None and db.read() == b"bolt" * 1000
    assert "member/wal/0.wal" in names and "member/wal/0.tmp" not in names


def test_a_backend_that_keeps_changing_is_an_error(node_root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # sha256sum that answers differently each time: the db "changes" during every copy
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    counter = tmp_path / "n"
    counter.write_text("0")
    (fake_bin / "sha256sum").write_text(
        f'#!/bin/sh\nn=$(cat {counter}); echo $((n+1)) > {counter}; echo "$n  $1"\n')
    (fake_bin / "sha256sum").chmod(0o755)
    (fake_bin / "sleep").write_text("#!/bin/sh\n")
    (fake_bin / "sleep").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:/usr/bin:/bin")
    with pytest.raises(KindfixError, match="does not match its sum|kept changing"):
        _backup(tmp_path, "ha-3cp-permuted", None)


def test_refuses_a_directory_that_is_not_empty_or_a_link(node_root: Path, tmp_path: Path
                                                         ) -> None:
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "old").write_text("x")
    with pytest.raises(KindfixError, match="not empty"):
        _backup(tmp_path, "ha-3cp-healthy", snapshot_stream(b"x" * 100))
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KindfixError, match="symbolic link"):
        bk._fresh_directory(link)


@pytest.mark.parametrize("stream", [
    b"",  # nothing came
    snapshot_stream(b"data" * 100)[:-40] + b'"}}\n',  # cut off: hash does not match
    b'{"result": {"blob": "AAAA"}}\n{"res',  # not JSON to the end
    b'{"error": {"grpc_code": 14, "message": "etcdserver: no leader"}}\n',
])
def test_a_bad_snapshot_stream_is_one_error(stream: bytes) -> None:
    with pytest.raises(KindfixError):
        bk.parse_snapshot_stream(stream.decode())


def test_hostile_archive_members_are_not_taken() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("../../etc/passwd", "/etc/shadow", "etc/kubernetes/ok.conf"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("etc/kubernetes/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    assert [p for p, _, _ in bk.parse_node_tar(buf.getvalue())] == ["/etc/kubernetes/ok.conf"]
    with pytest.raises(KindfixError, match="unreadable"):
        bk.parse_node_tar(b"not a tar at all" * 100)
