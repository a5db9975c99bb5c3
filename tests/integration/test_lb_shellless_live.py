"""fix-lb on a load balancer without a shell, on a real bed (issue #9.6).

kind's haproxy image v0.12-v0.31 is distroless (haproxy, cp, mkdir, kill; no sh). The bed's LB
is Debian's haproxy, so the test takes its shells away (`mv`, run directly: no sh needed) before
the repair and gives them back for the bed's own checks, which read haproxy's stats through sh.
The bed's LB has no `kill` binary either: the reload goes through the engine's signal.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

import pytest

from testbed.bed import Bed
from testbed.checks import check_bed
from tests.integration.repair_helpers import kindfix, timed, wait_booted, wait_healthy
from tests.integration.test_repair import _permute

pytestmark = pytest.mark.docker

CFG = "/usr/local/etc/haproxy/haproxy.cfg"
SHELLS = ("sh", "dash", "bash")
HIDDEN = "/kindfix-test-shells"


def _read(bed: Bed, path: str) -> bytes | None:
    try:
        stream, _ = bed.client.api.get_archive(bed.lb, path)
    except Exception:  # docker.errors.NotFound
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        f = tar.extractfile(member)
        return f.read() if f else None


def _run(bed: Bed, argv: list[str]) -> tuple[int, str]:
    res = bed.client.containers.get(bed.lb).exec_run(argv)
    return res.exit_code, res.output.decode(errors="replace")


def test_repair_rewrites_a_literal_config_on_a_shell_less_lb(make_bed: Callable[..., Bed]) -> None:
    bed = make_bed(control_planes=3, workers=0, generation="v0.8", lb="literal", seed_keys=20)
    _permute(bed)
    wait_booted(bed)
    for node in bed.nodes:  # a kind node image has it (kindfix refuses a node without it)
        bed.exec(node, ["sh", "-c", "[ -e /kind/version ] || echo v1.29.2 > /kind/version"])
    assert any("load balancer backend" in r for r in check_bed(bed).reasons)
    before = _read(bed, CFG)
    assert before is not None
    assert _run(bed, ["mkdir", HIDDEN])[0] == 0
    for sh in SHELLS:
        _run(bed, ["mv", f"/usr/bin/{sh}", f"{HIDDEN}/{sh}"])
    try:
        code, out = _run(bed, ["sh", "-c", "true"])
        assert code in (126, 127), (code, out)  # as on kind's distroless image
        res = kindfix(bed, "repair", "--yes")
        timed("3-CP v0.8 literal LB repair, LB without a shell", res.seconds)
        assert res.exit_code == 0, res
        after = _read(bed, CFG)
        assert after is not None and after != before
        ips = bed.ips()
        for cp in bed.control_planes:
            assert f"server {cp} {ips[cp]}:6443".encode() in after, after
        run_ids = [line.split("run ", 1)[1].split(":", 1)[0] for line in res.stdout.splitlines()
                   if "backups in /kind/kindfix/backups/" in line]
        assert len(run_ids) == 1, res
        assert _read(bed, f"{CFG}.kindfix-{run_ids[0]}") == before  # the original, restorable
    finally:
        for sh in SHELLS:
            _run(bed, ["mv", f"{HIDDEN}/{sh}", f"/usr/bin/{sh}"])
    report = wait_healthy(bed)
    servers = {s.name: s for s in report.lb}
    for cp in bed.control_planes:
        assert servers[cp].addr == bed.ips()[cp], servers[cp]
        assert servers[cp].op_state == 2, servers[cp]  # haproxy reloaded the new config
