"""Ad-hoc recovery verbs on a live 3-control-plane bed (issue #13): `kindfix etcd members|health`
and `kindfix backup`, with quorum and after Docker permuted the IPs (quorum lost)."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.bed import Bed
from testbed.breaking import permute
from testbed.images import etcd_binaries

from .repair_helpers import etcd_data, kindfix, wait_booted, wait_healthy

pytestmark = pytest.mark.docker


def snapshot_status(db: Path) -> dict[str, int]:
    """`etcdutl snapshot status` of the real etcd 3.5.1 (the bed's own binaries)."""
    done = subprocess.run([str(etcd_binaries() / "etcdutl"), "snapshot", "status", str(db),
                           "-w", "json"], capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(done.stdout))


def test_etcd_view_and_backup_with_and_without_quorum(make_bed: Callable[..., Bed],
                                                      tmp_path: Path) -> None:
    bed = make_bed(control_planes=3, workers=0, generation="v0.15", seed_keys=50)
    wait_healthy(bed)
    data = etcd_data(bed, bed.control_planes[0])

    health = kindfix(bed, "etcd", "health")
    assert health.exit_code == 0, health
    members = json.loads(kindfix(bed, "etcd", "members", "-o", "json").stdout)
    assert members["quorum"] is True
    assert [m["state"] for m in members["members"]] == ["serving"] * 3
    assert all(m["urls_current"] and len(m["seen_by"]) == 3 for m in members["members"])
    assert sum(bool(m["is_leader"]) for m in members["members"]) == 1

    with_quorum = tmp_path / "with-quorum"
    run = kindfix(bed, "backup", "--output", str(with_quorum))
    assert run.exit_code == 0, run
    manifest = json.loads((with_quorum / "kindfix-backup.json").read_text())
    (snap,) = manifest["etcd"]
    assert snap["kind"] == "snapshot"
    status = snapshot_status(with_quorum / snap["stored"])  # etcdutl checks the appended hash
    assert status["revision"] >= data.revision
    assert not [p for p in with_quorum.rglob("*") if p.is_file()
                and b"PRIVATE KEY" in p.read_bytes()]
    assert {oct(p.stat().st_mode & 0o777) for p in with_quorum.rglob("*")} == {"0o700", "0o600"}
    assert kindfix(bed, "backup", "--output", str(with_quorum)).exit_code == 1  # not empty

    permute(bed)
    wait_booted(bed)
    lost = kindfix(bed, "etcd", "members", "-o", "json")
    view = json.loads(lost.stdout)
    assert view["quorum"] is not True, lost
    assert all(m["state"] != "serving" for m in view["members"]), lost
    assert [m for m in view["members"] if m["most_up_to_date"]], lost
    table = kindfix(bed, "etcd", "members")
    assert "most up to date:" in table.stdout, table
    assert kindfix(bed, "etcd", "health").exit_code == 4

    without = tmp_path / "without-quorum"
    run = kindfix(bed, "backup", "--output", str(without))
    assert run.exit_code == 0, run
    copies = json.loads((without / "kindfix-backup.json").read_text())["etcd"]
    assert sorted(c["node"] for c in copies) == sorted(bed.control_planes)
    for c in copies:
        assert c["kind"] == "data-dir"
        with tarfile.open(without / c["stored"]) as tar:
            names = tar.getnames()
        assert "member/snap/db" in names, names
