"""Never make a node worse (issue #9): the journal's node-side scripts run for real with the
host's sh (compare-and-swap writes, certificates kept until the new ones are verified, no temp
file left, fsync), and a rollback that restores what it can and names the rest."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from kindfix import journal
from kindfix import node as node_mod
from kindfix.errors import CommandError, KindfixError
from kindfix.journal import Journal, RunRecorder, rollback
from kindfix.nodescripts import script
from tests.fakes import FakeNode
from tests.unit.helpers_nodes import local_node, sh, with_file_commands


@pytest.fixture
def local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(journal, "ROOT", str(tmp_path / "kindfix"))
    monkeypatch.setattr(journal, "JOURNAL_DIR", str(tmp_path / "kindfix" / "journal"))
    return tmp_path


def _recorder(node: object, n: int) -> RunRecorder:
    return RunRecorder(Journal(f"20261127T180000Z-{n:04d}", "kind"), node)  # type: ignore[arg-type]


def _pair(root: Path, name: str = "peer") -> tuple[Path, Path]:
    crt, key = root / "pki" / f"{name}.crt", root / "pki" / f"{name}.key"
    crt.parent.mkdir(exist_ok=True)
    crt.write_bytes(f"old {name} cert".encode())
    key.write_bytes(f"old {name} key".encode())
    key.chmod(0o600)
    return crt, key


def _pairs(*pairs: tuple[Path, Path]) -> list[tuple[tuple[str, bytes | None],
                                                    tuple[str, bytes | None]]]:
    return [((str(c), c.read_bytes()), (str(k), k.read_bytes())) for c, k in pairs]


# --- certificates: the old pair stays until the new one is verified ---------------------------

def test_a_failing_kubeadm_puts_every_old_pair_back(local_root: Path) -> None:
    """Before: the regenerate script removed both pairs, then exec'd kubeadm; a kubeadm that
    failed (an unknown apiVersion in kubeadm.conf) left the node without peer.crt/key."""
    node = local_node()
    peer, server = _pair(local_root, "peer"), _pair(local_root, "server")
    rec = _recorder(node, 1)
    # a kubeadm that makes the first pair, then fails on the second phase
    kubeadm = ["sh", "-c", 'printf half > "$0"; echo "unknown apiVersion" >&2; exit 1',
               str(peer[0])]
    with pytest.raises(CommandError) as e:
        rec.regenerate(node, _pairs(peer, server), kubeadm)
    assert e.value.exit_code == 1
    assert "unknown apiVersion" in e.value.message
    for name, (crt, key) in (("peer", peer), ("server", server)):
        assert crt.read_bytes() == f"old {name} cert".encode()
        assert key.read_bytes() == f"old {name} key".encode()
    assert oct(peer[1].stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in (local_root / "pki").iterdir()) == [
        "peer.crt", "peer.key", "server.crt", "server.key"]  # nothing left aside


def test_a_new_certificate_that_fails_verification_is_replaced_by_the_old_one(
        local_root: Path) -> None:
    node = local_node()
    crt, key = _pair(local_root)
    rec = _recorder(node, 2)
    seen: list[dict[str, bytes | None]] = []

    def verify(new: dict[str, bytes | None]) -> str | None:
        seen.append(new)
        return "the new peer.crt does not cover 172.18.0.5"

    with pytest.raises(KindfixError, match="does not cover 172.18.0.5; the old certificate and "
                                           "key are back"):
        rec.regenerate(node, _pairs((crt, key)),
                       ["sh", "-c", 'printf new > "$0"; printf new > "$1"', str(crt), str(key)],
                       verify=verify)
    assert seen == [{str(crt): b"new"}]  # verified what kubeadm made
    assert (crt.read_bytes(), key.read_bytes()) == (b"old peer cert", b"old peer key")
    assert sorted(p.name for p in crt.parent.iterdir()) == ["peer.crt", "peer.key"]


def test_a_verified_pair_replaces_the_old_one_which_stays_in_the_backup(
        local_root: Path) -> None:
    node = local_node()
    crt, key = _pair(local_root)
    rec = _recorder(node, 3)
    rec.regenerate(node, _pairs((crt, key)),
                   ["sh", "-c", '[ ! -e "$0" ] && [ ! -e "$1" ] && printf new > "$0" && '
                    'printf new > "$1"', str(crt), str(key)],  # kubeadm sees no old pair
                   verify=lambda _new: None)
    assert (crt.read_bytes(), key.read_bytes()) == (b"new", b"new")
    assert sorted(p.name for p in crt.parent.iterdir()) == ["peer.crt", "peer.key"]
    backups = {Path(e.path).name: Path(e.backup).read_bytes() for e in rec.journal.files}
    assert backups == {"peer.crt": b"old peer cert", "peer.key": b"old peer key"}


def test_a_pair_a_killed_run_left_aside_comes_back_before_kubeadm_runs_again(
        local_root: Path) -> None:
    """Killed after kubeadm made an (unverified) pair: the pair aside is the old one."""
    node = local_node()
    crt, key = _pair(local_root)
    for p in (crt, key):
        p.rename(str(p) + journal.ASIDE)
        p.write_bytes(b"unverified")
    rec = _recorder(node, 4)
    got: list[bytes] = []
    rec.regenerate(node, _pairs((crt, key)),
                   ["sh", "-c", '[ ! -e "$0" ] || exit 9; printf made > "$0"; '
                    'printf made > "$1"', str(crt), str(key)],
                   verify=lambda new: got.append(new[str(crt)] or b"") or None)
    assert got == [b"made"]
    backups = {Path(e.path).name: Path(e.backup).read_bytes() for e in rec.journal.files}
    assert backups == {"peer.crt": b"old peer cert", "peer.key": b"old peer key"}


# --- file writes: compare and swap, no temp file left, durable --------------------------------

def test_a_write_over_a_file_that_changed_since_it_was_read_is_refused(
        local_root: Path) -> None:
    """kind's entrypoint rewrites files while a node boots: a change made after observe must
    not be overwritten (before: it was, and its backup then failed rollback's checksum)."""
    node = local_node()
    target = local_root / "kubeadm-flags.env"
    target.write_bytes(b"--node-ip=172.18.0.5 (rewritten by the entrypoint)\n")
    rec = _recorder(node, 5)
    with pytest.raises(CommandError) as e:
        rec.replace_file(node, str(target), b"--node-ip=172.18.0.3\n", b"--node-ip=172.18.0.9\n")
    assert e.value.exit_code == journal.CHANGED
    assert f"{target} changed since it was read; run again" in e.value.message
    assert target.read_bytes() == b"--node-ip=172.18.0.5 (rewritten by the entrypoint)\n"
    assert sorted(p.name for p in local_root.iterdir()) == ["kindfix", "kubeadm-flags.env"]
    assert not (local_root / "kindfix" / "backups").exists()  # nothing kept: nothing changed


def test_a_file_that_appeared_since_it_was_read_is_not_overwritten(local_root: Path) -> None:
    node = local_node()
    target = local_root / "cds.yaml"
    target.write_bytes(b"written meanwhile\n")
    with pytest.raises(CommandError) as e:
        _recorder(node, 6).replace_file(node, str(target), None, b"ours\n")
    assert e.value.exit_code == journal.CHANGED
    assert target.read_bytes() == b"written meanwhile\n"


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    """Before: a write that failed after mktemp left .kindfix.XXXXXX beside the target."""
    target, backup = tmp_path / "etc" / "scheduler.conf", tmp_path / "b" / "scheduler.conf"
    target.parent.mkdir()
    target.write_bytes(b"old\n")
    backup.parent.mkdir()
    backup.write_bytes(b"old\n")
    (tmp_path / "b" / "scheduler.conf.mode").write_text("not-a-mode\n")  # chmod fails
    p = subprocess.run(["sh", "-c", script("journal-replace"), "x", str(target), str(backup),
                        hashlib.sha256(b"new\n").hexdigest(),
                        hashlib.sha256(b"old\n").hexdigest()],
                       input=b"new\n", capture_output=True, timeout=30, check=False)
    assert p.returncode != 0
    assert b"chmod" in p.stderr  # it got as far as the mode, past the complete copy
    assert target.read_bytes() == b"old\n"
    assert sorted(x.name for x in target.parent.iterdir()) == ["scheduler.conf"]


def test_an_incomplete_node_write_leaves_no_temp_file_and_a_restore_neither(
        tmp_path: Path) -> None:
    dst = tmp_path / "etcd.yaml"
    dst.write_bytes(b"current\n")
    (tmp_path / "backup").write_bytes(b"original\n")
    (tmp_path / "backup.mode").write_text("bogus\n")
    p = sh(script("journal-restore"), str(tmp_path / "backup"), str(dst), "600")
    assert p.returncode != 0
    assert dst.read_bytes() == b"current\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["backup", "backup.mode", "etcd.yaml"]


def _logging_sync(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `sync` on PATH that logs the files it is given (one batch per call, then --)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sync.log"
    (bin_dir / "sync").write_text(f'#!/bin/sh\nfor f; do [ -e "$f" ] && echo "$f"; done '
                                  f'>> {log}\necho -- >> {log}\n')
    (bin_dir / "sync").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def _synced(log: Path) -> list[list[str]]:
    return [part.splitlines() for part in log.read_text().split("--\n")[:-1]]


def test_a_replaced_file_and_its_backup_are_synced_before_and_after_the_rename(
        tmp_path: Path) -> None:
    """fsync through `sync FILE...`: the backup and the new content before the rename, the
    directory after it (before: no sync at all)."""
    env, log = _logging_sync(tmp_path)
    target, backup = tmp_path / "etc" / "admin.conf", tmp_path / "b" / "admin.conf"
    target.parent.mkdir()
    target.write_bytes(b"old\n")
    p = subprocess.run(["sh", "-c", script("journal-replace"), "x", str(target), str(backup),
                        hashlib.sha256(b"new\n").hexdigest(),
                        hashlib.sha256(b"old\n").hexdigest()],
                       input=b"new\n", capture_output=True, env=env, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    assert target.read_bytes() == b"new\n"
    synced = _synced(log)
    flat = [f for batch in synced for f in batch]
    assert str(backup) + ".tmp" in flat  # the original, on disk before anything replaces it
    assert any(f.startswith(str(target.parent / ".kindfix.")) for f in flat)
    assert synced[-1] == [str(target.parent)]  # the rename itself, last


def test_the_journal_is_synced_before_and_after_its_rename(tmp_path: Path) -> None:
    env, log = _logging_sync(tmp_path)
    target = tmp_path / "journal" / "run.json"
    content = b'{"run_id": "r"}'
    p = subprocess.run(["sh", "-c", node_mod._WRITE_FILE_SCRIPT, "kindfix-write", str(target),
                        "600", hashlib.sha256(content).hexdigest()], input=content,
                       capture_output=True, env=env, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    synced = _synced(log)
    assert len(synced) == 2
    [temp] = synced[0]
    assert temp.startswith(str(target.parent / ".kindfix."))
    assert synced[1] == [str(target.parent)]


# --- rollback: everything it can, and every file it cannot -----------------------------------

def test_rollback_restores_the_rest_and_names_every_file_it_could_not_restore() -> None:
    """Before: the first file it could not restore stopped the rollback halfway."""
    node = with_file_commands(FakeNode("kind-control-plane"))
    rec = _recorder(node, 7)
    paths = [f"/etc/kubernetes/{n}.conf" for n in ("admin", "scheduler", "controller-manager")]
    for p in paths:
        node.files[p] = f"{p} original\n".encode()
        rec.backup_file(node, p, node.files[p])
        node.files[p] = b"rewritten\n"
    node.files[rec.journal.files[1].backup] = b"tampered\n"  # scheduler's: wrong checksum
    del node.files[rec.journal.files[2].backup]  # controller-manager's: gone
    rec.journal.files.append(replace(rec.journal.files[0], node="kind-control-plane9"))
    with pytest.raises(KindfixError) as e:
        rollback({node.name: node}, rec.journal)
    message = e.value.message
    assert message.startswith(f"rollback of run {rec.run_id}: restored 1 file(s), could not "
                              "restore 3: ")
    assert "kind-control-plane9:/etc/kubernetes/admin.conf (the node no longer exists)" in message
    assert "kind-control-plane:/etc/kubernetes/scheduler.conf (restored, but it does not " \
           "match its backup checksum)" in message
    assert "kind-control-plane:/etc/kubernetes/controller-manager.conf (its backup " in message
    assert "\n" not in message
    assert node.files[paths[0]] == f"{paths[0]} original\n".encode()  # the rest: restored
    assert e.value.hint is not None and "kindfix rollback" in e.value.hint


def test_a_replace_whose_stdin_ended_early_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    """journal-replace.sh renames only a complete copy (scripts/lib/complete-or-abort.sh): a
    client killed mid-stream ends stdin early, and the partial file must not replace the old."""
    target, backup = tmp_path / "etc" / "admin.conf", tmp_path / "b" / "admin.conf"
    target.parent.mkdir()
    target.write_bytes(b"old\n")
    p = subprocess.run(["sh", "-c", script("journal-replace"), "x", str(target), str(backup),
                        hashlib.sha256(b"new content\n").hexdigest(),
                        hashlib.sha256(b"old\n").hexdigest()],
                       input=b"new co", capture_output=True, timeout=30, check=False)
    assert p.returncode == 5, p.stderr
    assert b"incomplete write refused" in p.stderr
    assert target.read_bytes() == b"old\n"
    assert sorted(x.name for x in target.parent.iterdir()) == ["admin.conf"]
    assert backup.read_bytes() == b"old\n"  # the original was kept before the write began
