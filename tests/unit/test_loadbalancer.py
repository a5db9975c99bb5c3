"""kind's external load balancer: haproxy by name or by literal IP, Envoy
(kindfix/loadbalancer.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ruamel.yaml import YAML

from kindfix.discovery import Cluster
from kindfix.findings import OK, STALE, UNREACHABLE
from kindfix.loadbalancer import (
    ENVOY_CDS,
    ENVOY_LDS,
    HAPROXY_CFG,
    audit_load_balancer,
    envoy_backends,
    envoy_cds,
    envoy_lds,
    haproxy_backends,
    lb_rewrites,
    split_host_port,
)
from kindfix.observe import NodeSnapshot
from tests.unit.helpers_nodes import dump

LB = "kind-external-load-balancer"


def lb_snapshot(name: str) -> tuple[Cluster, NodeSnapshot]:
    cluster, snaps, _ = dump(name)
    return cluster, snaps[LB]


@pytest.mark.parametrize(("addr", "want"), [
    ("172.18.0.3:6443", ("172.18.0.3", "6443")),
    ("kind-control-plane:6443", ("kind-control-plane", "6443")),
    ("[fc00:f853:ccd:e793::3]:6443", ("fc00:f853:ccd:e793::3", "6443")),
    ("fc00:f853:ccd:e793::3", ("fc00:f853:ccd:e793::3", "")),
    ("kind-control-plane", ("kind-control-plane", "")),
])
def test_split_host_port(addr: str, want: tuple[str, str]) -> None:
    assert split_host_port(addr) == want


def test_haproxy_backends_by_name_and_by_literal_ip() -> None:
    _, by_name = lb_snapshot("ha-3cp-healthy")
    cfg = by_name.file(HAPROXY_CFG)
    assert cfg is not None
    names = [(b.name, b.address, b.port) for b in haproxy_backends(cfg.decode())]
    assert names == [(f"kind-control-plane{i}", f"kind-control-plane{i}", "6443")
                     for i in ("", "2", "3")]
    _, literal = lb_snapshot("ha-3cp-haproxy-literal")
    cfg = literal.file(HAPROXY_CFG)
    assert cfg is not None
    assert [b.address for b in haproxy_backends(cfg.decode())] == [
        "172.18.0.3", "172.18.0.4", "172.18.0.5"]


def test_audit_of_by_name_backends_is_ok() -> None:
    cluster, snap = lb_snapshot("ha-3cp-healthy")
    findings = audit_load_balancer(cluster, {LB: snap})
    assert len(findings) == 3
    assert {f.status for f in findings} == {OK}


def test_audit_flags_swapped_literal_backends_by_node_name() -> None:
    cluster, snap = lb_snapshot("ha-3cp-haproxy-literal")
    status = {f.source.split("#")[1]: f.status for f in audit_load_balancer(cluster, {LB: snap})}
    assert status == {"kind-control-plane": OK, "kind-control-plane2": STALE,
                      "kind-control-plane3": STALE}


def test_audit_of_an_exited_load_balancer() -> None:
    cluster, _, _ = dump("ha-3cp-permuted")
    [f] = audit_load_balancer(cluster, {})
    assert (f.node, f.status, f.advertised) == (LB, UNREACHABLE, "exited")
    assert f.detail == "load balancer container is Exited"


def test_rewrite_points_literal_backends_at_the_named_nodes_current_ips() -> None:
    cluster, snap = lb_snapshot("ha-3cp-haproxy-literal")
    [(path, (old, new))] = lb_rewrites(cluster, snap).items()
    assert path == HAPROXY_CFG
    assert old == snap.file(HAPROXY_CFG)
    ips = {n.name: n.ipv4 for n in cluster.control_planes}
    got = {b.name: b.address for b in haproxy_backends(new.decode())}
    assert got == ips
    changed = [(a, b) for a, b in zip(old.decode().splitlines(), new.decode().splitlines())
               if a != b]
    assert len(changed) == 2
    assert all("check check-ssl verify none" in b for _, b in changed)
    after = replace(snap, files={**snap.files, HAPROXY_CFG: new})
    assert lb_rewrites(cluster, after) == {}
    assert {f.status for f in audit_load_balancer(cluster, {LB: after})} == {OK}


def test_rewrite_of_an_ipv6_literal_backend_keeps_brackets_and_port() -> None:
    cluster, snap = lb_snapshot("ha-3cp-haproxy-literal")
    cp2 = cluster.node("kind-control-plane2")
    assert cp2 is not None
    assert cp2.ipv6
    cfg = b"backend kube-apiservers\n  server kind-control-plane2 [fc00::99]:6443 check\n"
    [(_, new)] = lb_rewrites(cluster, replace(snap, files={HAPROXY_CFG: cfg})).values()
    assert new == (f"backend kube-apiservers\n  server kind-control-plane2 "
                   f"[{cp2.ipv6}]:6443 check\n").encode()


def test_by_name_backends_need_no_rewrite() -> None:
    cluster, snap = lb_snapshot("ha-3cp-healthy")
    assert lb_rewrites(cluster, snap) == {}
    assert lb_rewrites(cluster, None) == {}


def test_empty_envoy_config_is_flagged_and_rebuilt_by_name() -> None:
    cluster, snap = lb_snapshot("ha-3cp-envoy-empty")
    [finding] = audit_load_balancer(cluster, {LB: snap})
    assert finding.status == STALE
    assert finding.advertised == "no backends"
    rewrites = lb_rewrites(cluster, snap)
    assert set(rewrites) == {ENVOY_CDS, ENVOY_LDS}
    cds, lds = rewrites[ENVOY_CDS][1], rewrites[ENVOY_LDS][1]
    assert envoy_backends(cds) == [n.name for n in cluster.control_planes]
    assert b"port_value: 6443" in lds
    assert b"cluster: kube_apiservers" in lds
    after = replace(snap, files={**snap.files, ENVOY_CDS: cds, ENVOY_LDS: lds})
    assert lb_rewrites(cluster, after) == {}
    assert {f.status for f in audit_load_balancer(cluster, {LB: after})} == {OK}


def test_generated_envoy_files_are_yaml_with_the_right_shape() -> None:
    cluster, _ = lb_snapshot("ha-3cp-envoy-empty")
    cds = YAML(typ="safe").load(envoy_cds(cluster, port=7443).decode())
    [res] = cds["resources"]
    assert res["type"] == "STRICT_DNS"
    assert res["name"] == "kube_apiservers"
    eps = res["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in eps] == [7443] * 3
    lds = YAML(typ="safe").load(envoy_lds(7443).decode())
    assert lds["resources"][0]["address"]["socket_address"] == {"address": "0.0.0.0",
                                                                "port_value": 7443}


def test_envoy_backends_of_broken_or_empty_yaml_is_empty() -> None:
    assert envoy_backends(b"resources: [unclosed") == []
    assert envoy_backends(b"   \n") == []
    assert envoy_backends(None) == []


def test_a_stale_literal_envoy_backend_is_rewritten() -> None:
    cluster, snap = lb_snapshot("ha-3cp-envoy-empty")
    stale_cds = envoy_cds(cluster).replace(b"address: kind-control-plane2", b"address: 172.18.0.99")
    snap = replace(snap, files={**snap.files, ENVOY_CDS: stale_cds})
    assert STALE in {f.status for f in audit_load_balancer(cluster, {LB: snap})}
    assert ENVOY_CDS in lb_rewrites(cluster, snap)
