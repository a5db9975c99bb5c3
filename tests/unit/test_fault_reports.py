"""What a failed repair says when the fault is on a node (issue #9, found by the live fault
injection in tests/integration/test_faults_live.py); both failed before their fixes in
the etcd data copy (now kindfix/scripts/lib/copy-data.sh, copy-checked.sh) and apply.py
(_cause)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from kindfix import nodescripts
from kindfix.apply import StepsFailed
from kindfix.errors import CommandError, KindfixError
from kindfix.plan import Step
from kindfix.recovery.manifest import MANIFEST, PARKED
from kindfix.runtime import ExecResult
from tests.unit.helpers_nodes import applier
from tests.unit.test_snapshot_restore import CP2, CP3, CPS, _cert_wave, _restore_cluster, resumed

CP = "kind-control-plane"

ENOSPC = "No space left on device"


def _data_dir(root: Path) -> Path:
    data = root / "etcd"
    (data / "member" / "snap").mkdir(parents=True)
    (data / "member" / "wal").mkdir()
    (data / "member" / "snap" / "db").write_bytes(os.urandom(4096))
    (data / "member" / "wal" / "0000000000000000-0000000000000000.wal").write_bytes(
        os.urandom(8192))
    return data


def _full_disk_cp(tmp_path: Path) -> dict[str, str]:
    """A `cp` on PATH that fails the way a full disk does: the WAL copy ends halfway, cp says
    "No space left on device" and exits 1. Each copy into a directory (-t) is counted in
    $CALLS; other calls (copy_data's probe for --sparse) copy and are not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "cp"
    shim.write_text(
        '#!/bin/sh\nprev=""; for a in "$@"; do [ "$prev" = -t ] && t="$a"; prev="$a"; done\n'
        '[ -z "$t" ] || echo cp >> "$CALLS"\n/bin/cp "$@" || exit $?\n'
        '[ -n "$t" ] || exit 0\n'
        'w=$(find "$t" -name "*.wal" | head -n1)\n'
        '[ -z "$w" ] || { truncate -s 4096 "$w"; '
        f'echo "cp: error writing \'$w\': {ENOSPC}" >&2; exit 1; }}\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "CALLS": str(tmp_path / "calls")}


# copy_checked once called copy_data under `||`, where POSIX sh ignores `set -e`: a failed cp went
# unnoticed, the checksums then differed (exit 4, "differs from the original"), the copy was
# retried and the partial copy kept.
def test_a_full_disk_during_the_data_copy_is_said_once_and_leaves_no_partial_copy(
        tmp_path: Path) -> None:
    src = _data_dir(tmp_path)
    dst = tmp_path / "backups" / "data"
    script = ("".join(nodescripts._part(p)[1] for p in ("etcd-running", "wait-stopped",
                                                         "copy-data", "copy-checked"))
              + "etcd_running() { :; }\n"  # nothing runs here: no wait in wait_stopped
              + 'set -e\ncopy_checked "$1" "$2"\n')
    p = subprocess.run(["sh", "-c", script, "kindfix-copy", str(src), str(dst)],
                       capture_output=True, text=True, timeout=60, check=False,
                       env=_full_disk_cp(tmp_path))
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode not in (0, 4), p.stderr
    assert ENOSPC in last, p.stderr  # the line kindfix's error shows
    assert (tmp_path / "calls").read_text().split() == ["cp"]  # a full disk is not retried
    assert not dst.exists() and not Path(f"{dst}.tmp").exists()  # the space is given back


def test_the_full_disk_shim_fails_like_a_full_disk(tmp_path: Path) -> None:
    """The xfail above fails for the reason it names (not a broken shim)."""
    src = _data_dir(tmp_path)
    (tmp_path / "out").mkdir()
    p = subprocess.run(["cp", "-p", "--parents", "-t", str(tmp_path / "out"),
                        "member/wal/0000000000000000-0000000000000000.wal"], cwd=src,
                       capture_output=True, text=True, timeout=30, check=False,
                       env=_full_disk_cp(tmp_path))
    assert p.returncode == 1 and ENOSPC in p.stderr
    assert (tmp_path / "out" / "member" / "wal").is_dir()
    copied = next((tmp_path / "out" / "member" / "wal").iterdir())
    assert copied.stat().st_size == 4096


# A control plane stopped while the etcd step runs: the command on it dies (exit 143/137). The
# error once said "etcd membership (snapshot-restore) failed: exit 143", without the node: the etcd
# step's own node is the first control plane, the failing one only in err.where.
def test_a_failed_etcd_command_on_another_node_is_named_in_the_error() -> None:
    step = Step(key="etcd", kind="etcd", node="kind-control-plane",
                summary="etcd membership: snapshot-restore", phase="snapshot-restore")
    err = CommandError(["sh", "-c", "<kindfix-restore>", "/var/lib/etcd"], 143,
                       where="kind-control-plane3")
    message = StepsFailed([(step, err)], []).message
    assert "kind-control-plane3" in message, message


def test_a_failed_file_step_names_its_node_and_file() -> None:
    """What already holds for node steps (the xfail above asks the same of the etcd step)."""
    step = Step(key="k", kind="write-file", node="kind-control-plane2",
                summary="rewrite", path="/etc/kubernetes/manifests/etcd.yaml")
    err = CommandError(["sh", "-c", "<kindfix-write>"], 1, stderr=f"mktemp: {ENOSPC}\n".encode(),
                       where="kind-control-plane2")
    message = StepsFailed([(step, err)], []).message
    assert "kind-control-plane2: writing /etc/kubernetes/manifests/etcd.yaml" in message
    assert ENOSPC in message


def test_a_failed_etcd_command_on_the_etcd_steps_own_node_is_named_too() -> None:
    """The etcd step is listed under the first control plane but its error line ("etcd
    membership (member-update) failed: ...") names no node: a full disk on that node was named
    only inside the backup path (found by the live member-update fault)."""
    step = Step(key="etcd", kind="etcd", node="kind-control-plane",
                summary="etcd membership: member-update", phase="member-update")
    err = CommandError(["sh", "-c", "<kindfix-copy>", "/var/lib/etcd"], 7,
                       stderr=f"cp: error writing 'x': {ENOSPC}\n".encode(),
                       where="kind-control-plane")
    message = StepsFailed([(step, err)], []).message
    assert "on kind-control-plane: exit 7" in message, message


def _node_stopped(*_: object) -> ExecResult:
    raise KindfixError(f"container {CP3} is not running")


@pytest.mark.parametrize(("undo_on_cp3", "why"), [
    (_node_stopped, f"container {CP3} is not running"),  # the exec raises
    (lambda *_: ExecResult(137, b"", b""), "exit 137"),  # the node was going down: an answer
])
def test_a_member_whose_node_stopped_is_not_said_to_run_again(
        monkeypatch: pytest.MonkeyPatch, undo_on_cp3: Callable[..., ExecResult],
        why: str) -> None:
    """A control plane stopped while the restore was prepared (live: `docker stop` at "etcd:
    stopping etcd on"): the wave fails, and undoing the preparation cannot reach that node.
    Once the error said "etcd was started again on its own data" and the journal forgot the
    etcd stages, while the stopped node's manifest stayed parked: started again it ran no etcd
    (3 members running before, 2 after). Then, in the CI of stop 19, the undo exec started
    while the container was going down and ended with exit 137: the journal forgot nothing,
    so it still said CP and CP2 were parked and copied while their etcd ran again, and the next
    run read their backends at once (`snapshot status` waits on bbolt's file lock for as long
    as etcd holds it: 120 s, then the exec timed out on both). Now each member started again is
    forgotten, and what the journal keeps of CP3 (parked, copied) is still so."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    plan = _cert_wave(cluster, nodes, side, failing=CP2)
    nodes[CP3].on_script("etcd-unprepare", undo_on_cp3)
    ap, _ = applier(cluster, nodes, side.snapshots)
    with pytest.raises(KindfixError) as e:
        ap.apply(plan)
    message = e.value.message
    # said of the members it is true of only
    assert f"etcd was started again on its own data on {CP}, {CP2};" in message, message
    assert "the prepared restore is undone" not in message, message
    assert f"{CP3}: could not start etcd again ({why})" in message, message
    assert "\n" not in message
    for name in (CP, CP2):  # the reachable members do run again
        assert MANIFEST in nodes[name].files and PARKED not in nodes[name].files
    assert PARKED in nodes[CP3].files and MANIFEST not in nodes[CP3].files
    assert [k for k in ap.recorder.journal.done if k.startswith("etcd:")] == [
        f"etcd:park:{CP3}", f"etcd:copy:{CP3}"]
    assert not any(n.startswith("etcd-") for n in ap.recorder.journal.notes)

    # the node started again: the next run stops and copies CP and CP2 afresh, reads CP3 as it
    # is, and finishes the job from its parked manifest
    nodes[CP3].on_script("etcd-unprepare", side.unprepare)
    ap, _ = resumed(cluster, nodes, side)
    side.staged.clear()
    side.events.clear()
    assert "etcd" in ap.apply(_cert_wave(cluster, nodes, side, failing=None))
    assert side.counts("park") == Counter({("park", CP): 1, ("park", CP2): 1})
    assert all(PARKED not in nodes[n].files and MANIFEST in nodes[n].files for n in CPS)
    assert side.gw.leader is not None


def test_a_member_journaled_as_parked_whose_manifest_is_back_is_parked_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal is what a run did, the node is what is so now: a member whose park and
    copy are journaled but whose etcd.yaml is back (put back by hand, or by an older kindfix's
    undo) is not read while its etcd may run: it is stopped and copied again."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    ap, _ = applier(cluster, nodes, side.snapshots)
    with pytest.raises(KindfixError):
        ap.apply(_cert_wave(cluster, nodes, side, failing=CP2))
    ap.recorder.mark_done(f"etcd:park:{CP}", f"etcd:copy:{CP}")  # as an older undo left it
    ap, said = resumed(cluster, nodes, side)
    side.staged.clear()
    side.events.clear()
    assert "etcd" in ap.apply(_cert_wave(cluster, nodes, side, failing=None))
    assert any(f"{CP}: {MANIFEST} is back" in s for s in said), said
    assert side.counts("park") == Counter(("park", n) for n in CPS)
    assert all(PARKED not in nodes[n].files and MANIFEST in nodes[n].files for n in CPS)
    assert side.gw.leader is not None
