"""The cluster lock on a real bed (issue #9.4): it lives in the cluster, so a second client with
another XDG_RUNTIME_DIR is refused with the owner; a SIGKILLed holder's lock is broken by the
next run on the same machine. Then the repair's backups are pruned (`runs --prune`, #9.10).

The first client holds the lock at the confirmation prompt (a pseudo-terminal as stdin), so the
second client's attempt is deterministic, not a race against a repair's duration.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.bed import Bed
from testbed.breaking import permute
from tests.integration.repair_helpers import kindfix, kindfix_argv, kindfix_env

pytestmark = pytest.mark.docker

LOCK = "/kind/kindfix/lock"


def _lock_on(bed: Bed) -> str:
    res = bed.exec(bed.control_planes[0], ["cat", LOCK])
    return res.stdout if res.exit_code == 0 else ""


def _wait_for_lock(bed: Bed, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held = _lock_on(bed)
        if held:
            return held
        assert proc.poll() is None, "the first client exited before it took the lock"
        time.sleep(0.2)
    pytest.fail(f"no lock on {bed.control_planes[0]} within {timeout_s:.0f}s")


def test_second_client_with_another_xdg_dir_is_refused_then_a_killed_holder_is_broken(
        make_bed: Callable[..., Bed], tmp_path: Path) -> None:
    bed = make_bed(control_planes=1, workers=1, generation="v0.15", seed_keys=20)
    permute(bed)  # so the repair has a plan to confirm
    for node in bed.nodes:  # a kind node image has it (kindfix refuses a node without it)
        bed.exec(node, ["sh", "-c", "[ -e /kind/version ] || echo v1.29.2 > /kind/version"])
    primary, replica = os.openpty()
    xdg_a, xdg_b = tmp_path / "a", tmp_path / "b"
    xdg_a.mkdir(mode=0o700)
    xdg_b.mkdir(mode=0o700)
    first = subprocess.Popen(
        kindfix_argv("repair", "--name", bed.cluster), stdin=replica,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=kindfix_env(bed, XDG_RUNTIME_DIR=str(xdg_a)))
    try:
        held = _wait_for_lock(bed, first)
        assert f'"pid":{first.pid},' in held
        second = kindfix(bed, "repair", "--yes", timeout_s=120, XDG_RUNTIME_DIR=str(xdg_b))
        err = second.stderr.splitlines()
        assert second.exit_code == 1, second
        assert re.fullmatch(
            rf"kindfix: error: another kindfix repair is already running on cluster "
            rf"'{bed.cluster}': by \S+@\S+ \(pid {first.pid}\) since \d{{4}}-\d\d-\d\d "
            rf"\d\d:\d\d:\d\d UTC \(\d+s ago\)", err[0]), second
        assert err[1].startswith("  hint: wait for it to finish"), second
        assert _lock_on(bed) == held  # the refused client changed nothing
        unset = kindfix(bed, "pin", timeout_s=120, XDG_RUNTIME_DIR="")
        assert unset.exit_code == 1 and "already running" in unset.stderr, unset
    finally:
        first.send_signal(signal.SIGKILL)  # a holder that dies without releasing
        first.wait(timeout=30)
        os.close(primary)
        os.close(replica)
    assert _lock_on(bed) == held
    third = kindfix(bed, "repair", "--dry-run", timeout_s=180, XDG_RUNTIME_DIR=str(xdg_b))
    assert third.exit_code == 0, third
    assert "breaking the lock of a kindfix repair that is no longer running" in third.stdout
    assert _lock_on(bed) == ""  # released at the end of the dry run
    # the repair itself, then its backups pruned (kindfix runs --prune)
    done = kindfix(bed, "repair", "--yes", XDG_RUNTIME_DIR=str(xdg_b))
    assert done.exit_code == 0, done
    [run_id] = re.findall(r"run (\S+): backups in", done.stdout)
    backed_up = [n for n in bed.nodes
                 if bed.exec(n, ["test", "-d", f"/kind/kindfix/backups/{run_id}"]).exit_code == 0]
    assert bed.control_planes[0] in backed_up
    listed = kindfix(bed, "runs", "--prune", "--keep", "0", "--dry-run")
    assert listed.exit_code == 0, listed
    assert re.search(rf"^{run_id}\s+done\s+would delete", listed.stdout, re.MULTILINE), listed
    pruned = kindfix(bed, "runs", "--prune", "--keep", "0")
    assert pruned.exit_code == 0, pruned
    assert "1 run(s) deleted" in pruned.stdout, pruned
    for node in backed_up:
        assert bed.exec(node, ["test", "-e", f"/kind/kindfix/backups/{run_id}"]).exit_code == 1
    cp = bed.control_planes[0]
    assert bed.exec(cp, ["test", "-e", f"/kind/kindfix/journal/{run_id}.json"]).exit_code == 1
    assert _lock_on(bed) == ""
