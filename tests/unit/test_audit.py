"""Audit over the fixture dumps (fixtures/README.md tells each dump's story)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kindfix.audit import audit
from kindfix.discovery import Cluster
from kindfix.dump import load_dump
from kindfix.errors import KindfixError
from kindfix.findings import STATUSES, UNKNOWN
from kindfix.observe import NodeSnapshot

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


# --- what could not be read is `unknown`, never consistent (issue 9.7) ------------------------


def _spoiled(name: str, node: str, path: str, content: bytes | None
             ) -> tuple[Cluster, dict[str, NodeSnapshot]]:
    cluster, snapshots = load_dump(_dump(name))
    snap = snapshots[node]
    files = dict(snap.files)
    if content is None:
        files.pop(path)
    else:
        files[path] = content
    snapshots[node] = replace(snap, files=files)
    return cluster, snapshots


@pytest.mark.parametrize(("path", "content", "source", "why"), [
    ("/etc/kubernetes/manifests/etcd.yaml", None, "/etc/kubernetes/manifests/etcd.yaml",
     "file is missing"),
    ("/etc/kubernetes/manifests/etcd.yaml", b"spec: [x", "/etc/kubernetes/manifests/etcd.yaml",
     "is not valid YAML"),
    ("/kind/kubeadm.conf", b"kind: Nothing\n", "/kind/kubeadm.conf#kubeadm.init.node-ip",
     "no value at [kind=InitConfiguration].nodeRegistration.kubeletExtraArgs.node-ip or "
     "[kind=InitConfiguration].nodeRegistration.kubeletExtraArgs[name=node-ip].value"),
    ("/kind/old-ipv4", b"172.18.0.300", "/kind/old-ipv4#kind.old-ipv4",
     "malformed address '172.18.0.300'"),
    ("/etc/kubernetes/pki/apiserver.crt", b"junk", "/etc/kubernetes/pki/apiserver.crt",
     "not a PEM certificate"),
])
def test_what_cannot_be_read_is_unknown_with_the_reason(path: str, content: bytes | None,
                                                        source: str, why: str) -> None:
    report = audit(*_spoiled("single-cp-healthy", "kind-control-plane", path, content))
    unknown = [f for f in report.findings if f.status == UNKNOWN]
    assert all(f.source.startswith(path) for f in unknown)  # nothing else is blamed
    by_source = {f.source: f for f in unknown}
    assert why in by_source[source].detail
    assert not report.consistent and report.unknown == tuple(unknown)
    assert "all addresses consistent" not in report.diagnosis
    assert any(line.startswith("unknown: kind-control-plane:" + source)
               for line in report.diagnosis)


def test_an_unparseable_certificate_is_unknown_not_stale() -> None:
    """Regenerating a certificate kindfix cannot read would replace what it does not know."""
    report = audit(*_spoiled("single-cp-healthy", "kind-control-plane",
                             "/etc/kubernetes/pki/etcd/peer.crt", b""))
    peer = [f for f in report.findings if "peer.crt" in f.source]
    assert [f.status for f in peer] == [UNKNOWN]


def test_a_stopped_node_in_a_dump_is_unknown_not_consistent() -> None:
    cluster, snapshots = load_dump(_dump("single-cp-healthy"))
    worker = cluster.node("kind-worker")
    assert worker is not None
    stopped = replace(cluster, nodes=tuple(replace(n, state="exited") if n is worker else n
                                           for n in cluster.nodes))
    del snapshots["kind-worker"]
    report = audit(stopped, snapshots)
    assert not report.consistent
    assert [(f.node, f.status, f.advertised) for f in report.unknown] == [
        ("kind-worker", UNKNOWN, "exited")]


def test_a_labelled_container_without_kind_files_is_refused() -> None:
    cluster, snapshots = _spoiled("single-cp-healthy", "kind-worker", "/kind/version", None)
    audit(cluster, snapshots)  # /kind/kubeadm.conf is there: kind made it
    snap = snapshots["kind-worker"]
    snapshots["kind-worker"] = replace(snap, files={
        p: c for p, c in snap.files.items() if p != "/kind/kubeadm.conf"})
    with pytest.raises(KindfixError, match="container kind-worker is labelled as a kind worker "
                                           "but is not a kind node: no /kind/version or "
                                           "/kind/kubeadm.conf"):
        audit(cluster, snapshots)


def test_the_unknown_status_is_rendered_in_json() -> None:
    from kindfix.render import as_json
    report = audit(*_spoiled("single-cp-healthy", "kind-worker",
                             "/var/lib/kubelet/kubeadm-flags.env", b"X=\"'\n"))
    data = json.loads(as_json(report))
    assert [f["status"] for f in data["findings"] if f["node"] == "kind-worker"
            and "kubeadm-flags" in f["source"]] == ["unknown"]


# --- etcd: unknown is never lost (issue #10) --------------------------------------------------

_REFUSED = "curl: (7) Failed to connect to 127.0.0.1 port {} after 0 ms: Couldn't connect to server"
_NOT_STARTED = ("\n@@kindfix-section member-list 7\n" + _REFUSED.format(2379)
                + "\n@@kindfix-section status 7\n" + _REFUSED.format(2379)
                + "\n@@kindfix-section health 7\n" + _REFUSED.format(2381)
                + "\n@@kindfix-section metrics 1\n\n@@kindfix-section end 0\n")
_NO_LEADER = ("\n@@kindfix-section member-list 28\nskipped: etcd reports no leader"
              "\n@@kindfix-section status 28\nskipped: etcd reports no leader"
              '\n@@kindfix-section health 0\n{"health":"false","reason":"RAFT NO LEADER"}'
              "\n@@kindfix-section metrics 0\netcd_server_has_leader 0"
              "\n@@kindfix-section end 0\n")


def _with_etcd_saying(dump: str, text: dict[str, str]) -> tuple[object, dict[str, object]]:
    from dataclasses import replace

    from kindfix import probes
    from kindfix.runtime import ExecResult

    cluster, snaps = load_dump(_dump(dump))
    out = dict(snaps)
    for name, body in text.items():
        commands = {**snaps[name].commands, probes.ETCD_PROBE: ExecResult(0, body.encode(), b"")}
        out[name] = replace(snaps[name], commands=commands)
    return cluster, out


CPS = ("kind-control-plane", "kind-control-plane2", "kind-control-plane3")


def test_etcd_that_has_not_started_yet_is_unknown_not_lost() -> None:
    from kindfix.plan import make_plan

    cluster, snaps = _with_etcd_saying("ha-3cp-healthy", dict.fromkeys(CPS, _NOT_STARTED))
    report = audit(cluster, snaps)  # type: ignore[arg-type]
    assert report.etcd.quorum is None
    assert not any("lost quorum" in line for line in report.diagnosis)
    assert "etcd: 3 of 3 members do not answer (still starting?): unknown, not broken" in \
        report.diagnosis
    plan = make_plan(cluster, snaps, report)  # type: ignore[arg-type]
    assert plan.empty and plan.etcd_strategy == "none", [s.summary for s in plan.steps]


def test_a_leaderless_majority_without_evidence_is_unknown_with_evidence_lost() -> None:
    from kindfix.plan import make_plan

    cluster, snaps = _with_etcd_saying("ha-3cp-healthy", dict.fromkeys(CPS, _NO_LEADER))
    report = audit(cluster, snaps)  # type: ignore[arg-type]
    assert report.etcd.quorum is None  # an instant without a leader: maybe electing
    assert report.etcd.leaderless_majority and not report.etcd.evidence
    assert make_plan(cluster, snaps, report).empty  # type: ignore[arg-type]
    permuted = audit(*load_dump(_dump("ha-3cp-permuted")))
    assert permuted.etcd.quorum is False
    assert any(e.endswith("peer.crt#SAN") for e in permuted.etcd.evidence)


def test_one_member_up_without_a_leader_is_not_lost() -> None:
    cluster, snaps = _with_etcd_saying("ha-3cp-healthy", {CPS[0]: _NO_LEADER,
                                                          CPS[1]: _NOT_STARTED,
                                                          CPS[2]: _NOT_STARTED})
    report = audit(cluster, snaps)  # type: ignore[arg-type]
    assert report.etcd.quorum is None
    assert report.etcd.silent == 2


def test_a_running_node_missing_from_a_dump_is_unknown() -> None:
    cluster, snapshots = load_dump(_dump("single-cp-healthy"))
    del snapshots["kind-worker"]
    report = audit(cluster, snapshots)
    assert [(f.node, f.detail) for f in report.unknown] == [
        ("kind-worker", "nothing was read from it (not in the dump): none of its files were read")]
