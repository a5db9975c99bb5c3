"""Backups, the run journal, rollback and the per-cluster lock (kindfix/journal.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kindfix import journal
from kindfix.errors import CommandError, KindfixError
from kindfix.journal import (
    FileEntry,
    Journal,
    RunRecorder,
    load_journals,
    rollback,
    unfinished,
)
from kindfix.node import ContainerNode
from kindfix.nodescripts import script
from tests.fakes import FakeNode, fail
from tests.unit.helpers_nodes import LocalRuntime, local_node, sh, with_file_commands

REPO = Path(__file__).parents[2]
MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"


def recorder(node: FakeNode, run_id: str = "20261125T180000Z-0001") -> RunRecorder:
    return RunRecorder(Journal(run_id, "kind"), node)


def cp_node(**files: bytes) -> FakeNode:
    return with_file_commands(FakeNode("kind-control-plane", files=dict(files)))


# --- backups -------------------------------------------------------------------------------

def test_first_backup_in_a_run_keeps_the_original() -> None:
    node = cp_node()
    node.files[MANIFEST] = b"original\n"
    rec = recorder(node)
    rec.backup_file(node, MANIFEST, b"original\n", mode=0o600)
    node.files[MANIFEST] = b"changed once\n"
    rec.backup_file(node, MANIFEST, b"changed once\n", mode=0o644)

    [entry] = rec.journal.files
    assert node.files[entry.backup] == b"original\n"
    assert entry.sha256 == hashlib.sha256(b"original\n").hexdigest()
    assert entry.mode == "600"
    assert entry.existed is True
    assert entry.backup.startswith(f"{journal.ROOT}/backups/{rec.run_id}/files/etc/")
    assert len(node.ran("journal-backup")) == 1


def test_backup_is_journaled_on_the_journal_node_with_mode_0600() -> None:
    node, journal_node = cp_node(), cp_node()
    node.files["/kind/kubeadm.conf"] = b"x"
    rec = recorder(journal_node)
    rec.backup_file(node, "/kind/kubeadm.conf", b"x")
    path = f"{journal.JOURNAL_DIR}/{rec.run_id}.json"
    saved = Journal.from_json(journal_node.files[path])
    assert saved.files == rec.journal.files
    assert journal_node.modes[path] == 0o600


def test_backup_of_a_missing_file_records_that_it_did_not_exist() -> None:
    node = cp_node()
    rec = recorder(node)
    rec.backup_file(node, "/home/envoy/lds.yaml", None)
    [entry] = rec.journal.files
    assert entry.existed is False
    assert entry.sha256 is None
    assert not node.ran("journal-backup")


def test_move_removes_the_file_after_backing_it_up() -> None:
    crt = "/etc/kubernetes/pki/etcd/peer.crt"
    node = cp_node()
    node.files[crt] = b"-----BEGIN CERTIFICATE-----\nold\n"
    rec = recorder(node)
    rec.backup_file(node, crt, node.files[crt], mode=0o600, move=True)
    assert crt not in node.files
    assert node.files[rec.journal.files[0].backup] == b"-----BEGIN CERTIFICATE-----\nold\n"
    backup_call = node.calls.index(("sh", "-c", script("journal-backup"), "kindfix-backup", crt,
                                    rec.journal.files[0].backup))
    assert node.calls.index(("rm", "-f", crt)) > backup_call


def test_a_failed_backup_stops_before_anything_is_journaled() -> None:
    node = cp_node()  # the file the snapshot saw is gone: cp fails
    rec = recorder(node)
    with pytest.raises(CommandError):
        rec.backup_file(node, MANIFEST, b"seen earlier")
    assert rec.journal.files == []


# --- the journal ---------------------------------------------------------------------------

def test_journal_json_round_trip() -> None:
    j = Journal("20261125T180000Z-0042", "dev", "failed",
                files=[{"node": "dev-control-plane", "path": "/a", "backup": "/b",
                        "existed": True, "sha256": "00", "mode": "644"}],
                done=["file:dev-control-plane:/a", "etcd:park:dev-control-plane"],
                notes=["etcd-best=dev-control-plane2"])
    assert Journal.from_json(j.to_json()) == j


def _journal_file(j: Journal) -> tuple[str, bytes]:
    return f"{journal.JOURNAL_DIR}/{j.run_id}.json", j.to_json()


def test_unfinished_is_the_newest_run_of_that_cluster_if_it_did_not_end() -> None:
    node = cp_node()
    runs = [Journal("20261120T100000Z-0001", "kind", "running"),
            Journal("20261121T100000Z-0002", "kind", "failed"),
            Journal("20261122T100000Z-0003", "kind", "done"),
            Journal("20261123T100000Z-0004", "other", "running")]
    node.files.update(_journal_file(j) for j in runs)
    node.files[f"{journal.JOURNAL_DIR}/20261124T100000Z-0005.json"] = b"{not json"
    node.files[f"{journal.JOURNAL_DIR}/README"] = b"not a journal"

    assert [j.run_id for j in load_journals(node)] == [j.run_id for j in runs]
    # the newest run of "kind" is done: the older killed and failed ones were superseded
    assert unfinished(node, "kind") is None
    last = journal.last_run(node, "kind")
    assert last is not None and last.run_id == "20261122T100000Z-0003"
    other = unfinished(node, "other")
    assert other is not None
    assert other.cluster == "other"
    assert unfinished(node, "absent") is None


@pytest.mark.parametrize(("status", "continued"), [
    (journal.RUNNING, True),  # killed mid-way
    (journal.INTERRUPTED, True),  # an error stopped it: "run again" continues it
    (journal.UNHEALTHY, False),  # every step ran, verify said NOT healthy: it ended
    (journal.FAILED, False),  # older kindfix: ended
    (journal.DONE, False),
    (journal.ROLLED_BACK, False),
])
def test_only_a_run_that_did_not_end_is_continued(status: str, continued: bool) -> None:
    node = cp_node()
    node.files.update([_journal_file(Journal("20261120T100000Z-0001", "kind", "running")),
                       _journal_file(Journal("20261121T100000Z-0002", "kind", status))])
    got = unfinished(node, "kind")
    assert (got.run_id if got else None) == ("20261121T100000Z-0002" if continued else None)


def test_no_journal_dir_means_no_runs() -> None:
    assert load_journals(cp_node()) == []
    assert unfinished(cp_node(), "kind") is None


# --- rollback ------------------------------------------------------------------------------

def _run_that_changed_two_files(node: FakeNode) -> RunRecorder:
    node.files[MANIFEST] = b"etcd: original\n"
    node.modes[MANIFEST] = 0o600
    rec = recorder(node)
    rec.backup_file(node, MANIFEST, node.files[MANIFEST], mode=0o600)
    node.write_file(MANIFEST, b"etcd: rewritten\n", 0o644)
    rec.backup_file(node, "/home/new.yaml", None)
    node.write_file("/home/new.yaml", b"created by the run\n")
    return rec


def test_rollback_restores_in_reverse_order_and_deletes_created_files() -> None:
    node = cp_node()
    rec = _run_that_changed_two_files(node)
    restored = rollback({node.name: node}, rec.journal)
    assert restored == [f"{node.name}:/home/new.yaml", f"{node.name}:{MANIFEST}"]
    assert node.files[MANIFEST] == b"etcd: original\n"
    assert node.modes[MANIFEST] == 0o600
    assert "/home/new.yaml" not in node.files
    rm = node.calls.index(("rm", "-f", "/home/new.yaml"))
    restore = node.calls.index(node.ran("journal-restore")[0])
    assert rm < restore


def test_rollback_raises_when_the_restored_file_does_not_match_its_checksum() -> None:
    node = cp_node()
    rec = _run_that_changed_two_files(node)
    node.files[rec.journal.files[0].backup] = b"etcd: tampered\n"
    with pytest.raises(KindfixError, match="does not match its backup checksum"):
        rollback({node.name: node}, rec.journal)


def test_rollback_names_a_node_that_no_longer_exists() -> None:
    node = cp_node()
    rec = _run_that_changed_two_files(node)
    with pytest.raises(KindfixError, match=r"kind-control-plane:\S+ \(the node no longer exists"):
        rollback({}, rec.journal)


# --- the node-side scripts, run for real with the host's sh -----------------------------------

def test_backup_script_keeps_the_original_and_leaves_no_temp_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "etc" / "etcd.yaml", tmp_path / "backups" / "r1" / "files" / "etcd.yaml"
    src.parent.mkdir()
    src.write_bytes(b"first\n")
    assert sh(script("journal-backup"), str(src), str(dst)).returncode == 0
    src.write_bytes(b"second\n")
    assert sh(script("journal-backup"), str(src), str(dst)).returncode == 0
    assert dst.read_bytes() == b"first\n"
    assert oct(dst.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["etcd.yaml"]


def test_backup_script_fails_when_the_source_is_gone(tmp_path: Path) -> None:
    p = sh(script("journal-backup"), str(tmp_path / "absent"), str(tmp_path / "b" / "absent"))
    assert p.returncode != 0
    assert not (tmp_path / "b" / "absent").exists()


def test_restore_script_puts_back_bytes_and_mode(tmp_path: Path) -> None:
    backup, dst = tmp_path / "backup", tmp_path / "target"
    backup.write_bytes(bytes(range(256)))
    dst.write_bytes(b"rewritten")
    assert sh(script("journal-restore"), str(backup), str(dst), "640").returncode == 0
    assert dst.read_bytes() == bytes(range(256))
    assert oct(dst.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup", "target"]


def test_backup_then_rollback_on_a_real_filesystem(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "ROOT", str(tmp_path / "kindfix"))
    monkeypatch.setattr(journal, "JOURNAL_DIR", str(tmp_path / "kindfix" / "journal"))
    node = local_node()
    target = tmp_path / "etc" / "kubernetes" / "scheduler.conf"
    target.parent.mkdir(parents=True)
    original = b"server: https://172.18.0.3:6443\n\x00\xff binary tail"
    target.write_bytes(original)
    target.chmod(0o600)
    created = tmp_path / "etc" / "new.conf"

    rec = RunRecorder(Journal("20261125T180000Z-0007", "kind"), node)
    rec.backup_file(node, str(target), original, mode=0o600)
    node.write_file(str(target), b"server: https://127.0.0.1:6443\n", mode=0o644)
    rec.backup_file(node, str(created), None)
    node.write_file(str(created), b"new\n")

    [saved] = load_journals(node)
    assert saved.files == rec.journal.files
    rollback({node.name: node}, saved)
    assert target.read_bytes() == original
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert not created.exists()


# --- replace_file / regenerate: one exec per change, for real on the host ---------------------

@pytest.fixture
def local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(journal, "ROOT", str(tmp_path / "kindfix"))
    monkeypatch.setattr(journal, "JOURNAL_DIR", str(tmp_path / "kindfix" / "journal"))
    return tmp_path


def test_replace_file_keeps_the_first_original_and_its_mode(local_root: Path) -> None:
    node = local_node()
    target = local_root / "controller-manager.conf"
    target.write_bytes(b"v1 original")
    target.chmod(0o600)
    rec = RunRecorder(Journal("20261125T180000Z-0008", "kind"), node)
    rec.replace_file(node, str(target), b"v1 original", b"v2")
    rec.replace_file(node, str(target), b"v2", b"v3")
    assert target.read_bytes() == b"v3"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    [entry] = rec.journal.files
    backup = Path(entry.backup)
    assert backup.read_bytes() == b"v1 original"
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert entry.sha256 == hashlib.sha256(b"v1 original").hexdigest()
    assert sorted(p.name for p in local_root.iterdir()) == ["controller-manager.conf", "kindfix"]

    [saved] = load_journals(node)
    rollback({node.name: node}, saved)
    assert target.read_bytes() == b"v1 original"
    assert oct(target.stat().st_mode & 0o777) == "0o600"


def test_replace_file_creates_a_new_file_and_rollback_removes_it(local_root: Path) -> None:
    node = local_node()
    target = local_root / "envoy" / "cds.yaml"
    rec = RunRecorder(Journal("20261125T180000Z-0009", "kind"), node)
    rec.replace_file(node, str(target), None, b"resources: []\n")
    assert target.read_bytes() == b"resources: []\n"
    assert rec.journal.files[0].existed is False
    rollback({node.name: node}, rec.journal)
    assert not target.exists()


_KUBEADM_STANDIN = 'printf "new cert" > "$0"; printf "new key" > "$1"'


def test_regenerate_keeps_and_removes_the_pair_then_runs_the_command(local_root: Path) -> None:
    node = local_node()
    crt, key = local_root / "pki" / "apiserver.crt", local_root / "pki" / "apiserver.key"
    crt.parent.mkdir()
    crt.write_bytes(b"old cert")
    key.write_bytes(b"old key")
    key.chmod(0o600)
    rec = RunRecorder(Journal("20261125T180000Z-0010", "kind"), node)
    rec.regenerate(node, [((str(crt), b"old cert"), (str(key), b"old key"))],
                   ["sh", "-c", _KUBEADM_STANDIN, str(crt), str(key)])
    assert (crt.read_bytes(), key.read_bytes()) == (b"new cert", b"new key")
    backups = {Path(e.path).name: Path(e.backup).read_bytes() for e in rec.journal.files}
    assert backups == {"apiserver.crt": b"old cert", "apiserver.key": b"old key"}
    rollback({node.name: node}, rec.journal)
    assert (crt.read_bytes(), key.read_bytes()) == (b"old cert", b"old key")
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_regenerate_keeps_every_pair_of_a_node_in_one_exec(local_root: Path) -> None:
    runtime = LocalRuntime()
    node = ContainerNode(runtime, "kind-control-plane", "control-plane")  # type: ignore[arg-type]
    pairs = []
    for name in ("server", "peer"):
        crt, key = local_root / f"{name}.crt", local_root / f"{name}.key"
        crt.write_bytes(f"old {name} cert".encode())
        key.write_bytes(f"old {name} key".encode())
        pairs.append(((str(crt), crt.read_bytes()), (str(key), key.read_bytes())))
    rec = RunRecorder(Journal("20261125T180000Z-0013", "kind"), node)
    # the command sees neither old pair, then makes both new ones
    rec.regenerate(node, pairs, ["sh", "-c", 'for f; do [ ! -e "$f" ] || exit 9; '
                                 'printf new > "$f"; done', "x",
                                 *(p for pair in pairs for p, _ in pair)])
    assert len([c for c in runtime.calls if "kindfix-regenerate" in c]) == 1
    assert all(Path(p).read_bytes() == b"new" for pair in pairs for p, _ in pair)
    backups = {Path(e.path).name: Path(e.backup).read_bytes() for e in rec.journal.files}
    assert backups == {"server.crt": b"old server cert", "server.key": b"old server key",
                       "peer.crt": b"old peer cert", "peer.key": b"old peer key"}
    rollback({node.name: node}, rec.journal)
    assert (local_root / "peer.key").read_bytes() == b"old peer key"


def test_regenerate_runs_the_command_without_the_old_pair(local_root: Path) -> None:
    node = local_node()
    crt, key = local_root / "etcd-peer.crt", local_root / "etcd-peer.key"
    crt.write_bytes(b"old cert")
    key.write_bytes(b"old key")
    rec = RunRecorder(Journal("20261125T180000Z-0011", "kind"), node)
    # kubeadm refuses to overwrite a pair that lacks a SAN: the pair must be gone when it runs
    with pytest.raises(CommandError) as e:
        rec.regenerate(node, [((str(crt), b"old cert"), (str(key), b"old key"))],
                       ["sh", "-c", '[ ! -e "$0" ] && [ ! -e "$1" ] && exit 9', str(crt),
                        str(key)])
    assert e.value.exit_code == 9
    rollback({node.name: node}, rec.journal)  # a failed kubeadm leaves nothing lost
    assert (crt.read_bytes(), key.read_bytes()) == (b"old cert", b"old key")


def test_the_journal_names_a_file_before_it_is_changed() -> None:
    journal_node = cp_node()
    node = FakeNode("kind-worker", "worker", files={"/kind/kubeadm.conf": b"old"})
    node.on_script("journal-replace", lambda *_: fail(137, "killed"))
    rec = RunRecorder(Journal("20261125T180000Z-0012", "kind"), journal_node)
    with pytest.raises(CommandError):
        rec.replace_file(node, "/kind/kubeadm.conf", b"old", b"new")
    saved = Journal.from_json(journal_node.files[f"{journal.JOURNAL_DIR}/{rec.run_id}.json"])
    assert [(e.node, e.path) for e in saved.files] == [("kind-worker", "/kind/kubeadm.conf")]


def test_rollback_leaves_a_file_that_never_changed_alone() -> None:
    node = cp_node()
    node.files["/kind/kubeadm.conf"] = b"untouched"
    rec = recorder(node)
    rec.journal.files.append(FileEntry(node.name, "/kind/kubeadm.conf", "/nowhere", True,
                                       hashlib.sha256(b"untouched").hexdigest(), "644"))
    assert rollback({node.name: node}, rec.journal) == [f"{node.name}:/kind/kubeadm.conf"]
    assert not node.ran("journal-restore")
    assert node.files["/kind/kubeadm.conf"] == b"untouched"


def test_a_rolled_back_run_is_not_resumed() -> None:
    # its journal.done would make the next repair skip every step over restored stale files
    node = cp_node()
    rolled_back = Journal("20261125T170000Z-0001", "kind", "rolled-back",
                          done=["file:kind-control-plane:/kind/kubeadm.conf"])
    node.files.update([_journal_file(rolled_back)])
    assert unfinished(node, "kind") is None


def test_concurrent_saves_share_writes_and_the_last_write_holds_every_change() -> None:
    import threading
    import time as _time

    journal_node = cp_node()
    path = f"{journal.JOURNAL_DIR}/20261125T180000Z-0014.json"
    writes: list[bytes] = []
    real_write = journal_node.write_file

    def slow_write(p: str, content: bytes, mode: int = 0o644) -> None:
        _time.sleep(0.05)  # a docker exec
        writes.append(content)
        real_write(p, content, mode)

    journal_node.write_file = slow_write  # type: ignore[method-assign]
    rec = RunRecorder(Journal("20261125T180000Z-0014", "kind"), journal_node)
    threads = [threading.Thread(target=rec.mark_done, args=(f"step-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    saved = Journal.from_json(journal_node.files[path])
    assert sorted(saved.done) == sorted(f"step-{i}" for i in range(8))
    assert 1 <= len(writes) < 8  # grouped: a caller whose change was written returns at once
    rec.mark_done("step-0")  # nothing new: no write
    assert len(writes) < 8


def test_rollback_on_a_node_without_a_shell_goes_through_the_archive_api() -> None:
    """kind's haproxy image (v0.12-v0.31) has no sh: the restore script exits 127 there, and
    the original comes back through read_file/write_file (docker cp) instead."""
    cfg = "/usr/local/etc/haproxy/haproxy.cfg"
    original = b"backend kube-apiservers\n  server a 172.18.0.3:6443\n"
    lb = FakeNode("kind-external-load-balancer", "external-load-balancer",
                  files={cfg: b"rewritten\n", f"{cfg}.kindfix-run1": original})
    entry = FileEntry(lb.name, cfg, f"{cfg}.kindfix-run1", True,
                      hashlib.sha256(original).hexdigest(), "600")
    assert journal._restore_entry(lb, entry) is True
    assert lb.files[cfg] == original
    assert lb.modes[cfg] == 0o600
    assert lb.unhandled  # the shell was tried first, and was not there
    del lb.files[f"{cfg}.kindfix-run1"]
    lb.files[cfg] = b"rewritten\n"
    with pytest.raises(KindfixError, match="is missing"):
        journal._restore_entry(lb, entry)
