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

from .repair_helpers import etcd_data, fingerprint, kindfix, wait_booted, wait_healthy

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


def _seeded(bed: Bed, node: str) -> dict[str, str]:
    return {k: v for k, v in etcd_data(bed, node).kvs if k.startswith("/registry/kindbed/")}


def _sha(bed: Bed, node: str, path: str) -> str:
    return bed.exec(node, ["sha256sum", path]).stdout.split()[0]


def test_backup_break_restore(make_bed: Callable[..., Bed], tmp_path: Path) -> None:
    """backup -> lose a key, edit files, permute the IPs -> restore: every key back, files with
    no address byte for byte, the edits gone, the bed's own check healthy."""
    bed = make_bed(control_planes=3, workers=1, generation="v0.15", seed_keys=40)
    wait_healthy(bed)
    first = bed.control_planes[0]
    keys = _seeded(bed, first)
    assert len(keys) == 40
    no_address = "/etc/kubernetes/manifests/kube-scheduler.yaml"  # nothing in it moves
    before = {cp: _sha(bed, cp, no_address) for cp in bed.control_planes}
    saved = tmp_path / "backup"
    assert kindfix(bed, "backup", "--output", str(saved)).exit_code == 0

    # break it: a key lost, files edited, then Docker permutes the IPs
    assert bed.etcdctl(first, "del", "/registry/kindbed/seed-7").ok
    for cp in bed.control_planes:
        bed.exec(cp, ["sh", "-c", f"echo '# edited' >> {no_address}"])
    bed.exec(bed.workers[0], ["sh", "-c",
                              "echo '# edited' >> /var/lib/kubelet/kubeadm-flags.env"])
    permute(bed)
    wait_booted(bed)

    dry = kindfix(bed, "restore", str(saved), "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry
    kinds = {s["kind"] for s in json.loads(dry.stdout)["plan"]["steps"]}
    assert {"etcd", "write-file", "regen-cert"} <= kinds, dry
    assert all(_sha(bed, cp, no_address) != before[cp] for cp in bed.control_planes)

    done = kindfix(bed, "restore", str(saved), "--yes")
    assert done.exit_code == 0, done
    wait_healthy(bed)
    for cp in bed.control_planes:
        assert _sha(bed, cp, no_address) == before[cp], f"{cp}:{no_address} not restored"
        assert _seeded(bed, cp) == keys, f"{cp} does not serve every backed-up key"
    flags = bed.exec(bed.workers[0], ["cat", "/var/lib/kubelet/kubeadm-flags.env"]).stdout
    assert "# edited" not in flags
    assert kindfix(bed, "audit").exit_code == 0


def test_a_scoped_repair_touches_nothing_outside_its_scope(make_bed: Callable[..., Bed]
                                                           ) -> None:
    """`repair --only kubeconfigs` on a bed whose IPs moved (kind before v0.8: nothing was
    rewritten at boot): the kubeconfigs change, every other file kindfix may touch - manifests,
    kubeadm.conf, kubeadm-flags.env, certificates - keeps its hash; a full repair then heals."""
    bed = make_bed(control_planes=1, workers=1, generation="none", seed_keys=10)
    wait_healthy(bed)
    permute(bed)
    wait_booted(bed)
    certs = ("/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/etcd/server.crt",
             "/etc/kubernetes/pki/etcd/peer.crt")
    before = fingerprint(bed)
    cert_hashes = {c: _sha(bed, bed.control_planes[0], c) for c in certs}

    scoped = kindfix(bed, "repair", "--yes", "--only", "kubeconfigs")
    assert scoped.exit_code in (0, 4), scoped  # the rest is left stale on purpose
    assert "scope: kubeconfigs" in scoped.stdout, scoped
    changed = before.changed_files(fingerprint(bed))
    assert changed, scoped
    assert all(p.endswith(".conf") and "/etc/kubernetes/" in p and "/manifests/" not in p
               for p in changed), changed
    assert {c: _sha(bed, bed.control_planes[0], c) for c in certs} == cert_hashes

    full = kindfix(bed, "repair", "--yes")
    assert full.exit_code == 0, full
    wait_healthy(bed)
