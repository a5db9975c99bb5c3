"""`kindfix collect` on the live bed (issue 9.3, 9.8, 9.10): a cluster with a stopped node is
dumped, not refused (the stopped container's files through the archive API, its state recorded),
no credential of the real node reaches the dump, the dump's audit refuses the stopped node as a
live audit does, and an existing dump is never written into."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from kindfix import api
from kindfix.docker_runtime import DockerRuntime
from kindfix.dump import MANIFEST
from kindfix.errors import KindfixError
from testbed.bed import Bed

pytestmark = pytest.mark.docker

FLAGS = "/var/lib/kubelet/kubeadm-flags.env"


def test_collect_dumps_a_stopped_node_and_leaks_no_credential(
        make_bed: Callable[..., Bed], tmp_path: Path) -> None:
    bed = make_bed(control_planes=1, workers=1, generation="v0.15")
    cp, worker = bed.control_planes[0], bed.workers[0]
    runtime = DockerRuntime()
    admin = bed.exec(cp, ["cat", "/etc/kubernetes/admin.conf"]).stdout
    [key_data] = re.findall(r"client-key-data: (\S+)", admin)
    worker_flags = bed.exec(worker, ["cat", FLAGS]).stdout
    bed.client.containers.get(worker).stop(timeout=5)

    with pytest.raises(KindfixError, match=f"node {worker} is exited, not running"):
        api.audit_live(runtime, bed.cluster)
    out = api.collect(runtime, bed.cluster, tmp_path / "dump")

    manifest = json.loads((out / MANIFEST).read_text())
    assert [(u["node"], u["state"]) for u in manifest["unread"]] == [(worker, "exited")]
    assert (out / "nodes" / worker / "files" / FLAGS.lstrip("/")).read_text() == worker_flags
    dumped = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert key_data.encode() not in dumped
    assert b"client-key-data: REDACTED" in dumped
    assert not list(out.rglob("*.key"))
    assert not re.search(rb"PRIVATE KEY-----\s*MI", dumped)

    with pytest.raises(KindfixError, match=f"node {worker} was exited when the dump was"):
        api.audit_dump(out)
    with pytest.raises(KindfixError, match="exists and is not an empty directory"):
        api.collect(runtime, bed.cluster, out)
