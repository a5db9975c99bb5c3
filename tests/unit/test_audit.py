"""Audit over the fixture dumps (fixtures/README.md tells each dump's story)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kindfix.audit import audit
from kindfix.dump import load_dump
from kindfix.findings import STATUSES

DUMPS = sorted(p for p in (Path(__file__).parents[2] / "fixtures" / "dumps").iterdir()
               if p.is_dir())
HEALTHY = [p for p in DUMPS if p.name.endswith("-healthy")]
BROKEN = [p for p in DUMPS if not p.name.endswith("-healthy")]


def test_there_are_dumps_of_both_kinds() -> None:
    assert len(HEALTHY) >= 4
    assert len(BROKEN) >= 6


@pytest.mark.parametrize("dump", HEALTHY, ids=lambda p: p.name)
def test_healthy_dump_is_consistent(dump: Path) -> None:
    report = audit(*load_dump(dump))
    bad = [f for f in report.findings if f.status not in ("ok", "n/a")]
    assert report.consistent, bad
    assert report.diagnosis == ("all addresses consistent",)
    assert report.etcd.quorum is True
    # every control plane's files were really compared, not skipped
    cps = [n for n in report.nodes if n.role == "control-plane"]
    for cp in cps:
        assert sum(f.node == cp.name for f in report.findings) >= 15


@pytest.mark.parametrize("dump", BROKEN, ids=lambda p: p.name)
def test_broken_dump_reports_stale_findings(dump: Path) -> None:
    report = audit(*load_dump(dump))
    assert not report.consistent
    assert any(f.status in ("stale", "unreachable") for f in report.findings)
    assert report.diagnosis != ("all addresses consistent",)
    assert {f.status for f in report.findings} <= set(STATUSES)


def _dump(name: str) -> Path:
    return next(p for p in DUMPS if p.name == name)


def test_permuted_ha_diagnoses_lost_quorum_and_exited_lb() -> None:
    report = audit(*load_dump(_dump("ha-3cp-permuted")))
    assert report.etcd.quorum is False
    assert any(line.startswith("etcd lost quorum") for line in report.diagnosis)
    assert "load balancer container is Exited" in report.diagnosis
    stale_certs = {(f.node, f.source.rsplit("/", 1)[-1]) for f in report.findings
                   if f.status == "stale" and f.source.endswith("#SAN")}
    assert len({n for n, _ in stale_certs}) == 3


def test_v014_restart_leaves_kubeconfigs_stale_but_manifests_fixed() -> None:
    report = audit(*load_dump(_dump("single-cp-restart-v0.14")))
    by_id = {(f.node, f.source.split("#")[-1]): f.status for f in report.findings}
    assert by_id[("kind-control-plane", "controller-manager.server")] == "stale"
    assert by_id[("kind-control-plane", "etcd.advertise-client-urls")] == "ok"


def test_literal_haproxy_backends_are_checked_by_node_name() -> None:
    report = audit(*load_dump(_dump("ha-3cp-haproxy-literal")))
    lb = [f for f in report.findings if f.component == "load-balancer"]
    assert lb and any(f.status == "stale" for f in lb)


def test_json_report_has_the_documented_fields(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kindfix.cli import cli

    result = CliRunner().invoke(cli, ["audit", "--from-dump", str(_dump("ha-3cp-permuted")),
                                      "-o", "json"])
    assert result.exit_code == 4, result.output
    data = json.loads(result.output)
    assert data["consistent"] is False
    for f in data["findings"]:
        assert {"node", "component", "source", "advertised", "actual", "status"} <= set(f)
