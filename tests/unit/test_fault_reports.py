"""What a failed repair says when the fault is on a node (issue #9, found by the live fault
injection in tests/integration/test_faults_live.py); both failed before their fixes in
etcd_recovery.py (_COPY_DATA, _COPY_CHECKED) and apply.py (_cause)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from kindfix import etcd_recovery
from kindfix.apply import StepsFailed
from kindfix.errors import CommandError
from kindfix.plan import Step

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
    "No space left on device" and exits 1. Each call is counted in $CALLS."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "cp"
    shim.write_text(
        '#!/bin/sh\necho cp >> "$CALLS"\n/bin/cp "$@" || exit $?\n'
        'prev=""; for a in "$@"; do [ "$prev" = -t ] && t="$a"; prev="$a"; done\n'
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
    script = (etcd_recovery._STOPPED_COPY_FUNCTIONS
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
