"""kind's external load balancer: haproxy by name or by literal IP, Envoy
(kindfix/loadbalancer.py)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from ruamel.yaml import YAML

from kindfix.apply import Applier
from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
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
from kindfix.node import ContainerNode
from kindfix.observe import NodeSnapshot
from kindfix.plan import Plan, Step
from kindfix.runtime import ExecResult
from tests.fakes import ok
from tests.unit.helpers_nodes import applier, dump

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


# --- writing the config of a load balancer without a shell (kind's distroless haproxy) --------


class DistrolessEngine:
    """What the engine does for an image with only haproxy, cp, mkdir and kill: `docker cp`
    (whose put fails into a directory that does not exist, as put_archive does) and signals;
    the LB's FakeNode answers no `sh` at all (exit 127)."""

    @staticmethod
    def make(ap: Applier) -> None:
        lb = ap.runtime.nodes[LB]  # type: ignore[attr-defined]
        for prefix in [p for p in lb.handlers if p[:2] == ("sh", "-c")]:
            del lb.handlers[prefix]
        lb.on(("kill", "-s", "HUP", "1"), ok())
        real_put = ap.runtime.put_file

        def put(container: str, path: str, content: bytes, mode: int = 0o644) -> None:
            node = ap.runtime.nodes[container]  # type: ignore[attr-defined]
            parent = path.rsplit("/", 1)[0] + "/"
            if not any(p.startswith(parent) for p in node.files):
                raise KindfixError(f"docker write {path} failed: no such directory")
            real_put(container, path, content, mode)

        ap.runtime.put_file = put  # type: ignore[method-assign]
        # every node is reached through the engine, as on a real cluster
        ap.nodes = {name: ContainerNode(ap.runtime, name, n.role) for name, n in ap.nodes.items()}
        ap.recorder._journal_node = ap.nodes["kind-control-plane"]


def test_fix_lb_rewrites_a_literal_config_on_a_load_balancer_without_a_shell() -> None:
    cluster, snaps, nodes = dump("ha-3cp-haproxy-literal")
    lb = nodes[LB]
    original = lb.files[HAPROXY_CFG]
    ap, _ = applier(cluster, nodes, snaps)
    DistrolessEngine.make(ap)
    ap.apply(Plan("kind", (Step("lb:config", "fix-lb", LB, "fix the LB"),), "none"))

    new = lb.files[HAPROXY_CFG].decode()
    for cp in cluster.control_planes:
        assert f"server {cp.name} {cp.ipv4}:6443" in new
    run_id = ap.recorder.run_id
    backup = f"{HAPROXY_CFG}.kindfix-{run_id}"
    assert lb.files[backup] == original  # kept beside it, the directory the archive API has
    assert lb.modes[backup] == 0o600
    [entry] = ap.recorder.journal.files
    assert entry.to_dict() == {"node": LB, "path": HAPROXY_CFG, "backup": backup,
                               "existed": True, "sha256": hashlib.sha256(original).hexdigest(),
                               "mode": "644"}
    log = ap.runtime.log  # type: ignore[attr-defined]
    assert log.index(f"put {LB} {backup}") < log.index(f"put {LB} {HAPROXY_CFG}")
    assert ("kill", "-s", "HUP", "1") in lb.calls  # reloaded, as kind's action does
    assert "lb:config" in ap.recorder.journal.done
    assert all(c[0] in ("sh", "kill") for c in lb.calls)


def test_fix_lb_without_a_shell_keeps_the_first_original_when_resumed() -> None:
    cluster, snaps, nodes = dump("ha-3cp-haproxy-literal")
    lb = nodes[LB]
    original = lb.files[HAPROXY_CFG]
    ap, _ = applier(cluster, nodes, snaps)
    DistrolessEngine.make(ap)
    step = Plan("kind", (Step("lb:config", "fix-lb", LB, "fix the LB"),), "none")
    ap.apply(step)
    ap.recorder.journal.done.clear()  # as if killed before the step was marked done
    lb.files[HAPROXY_CFG] = original.replace(b"6443", b"6444")  # and changed again since
    ap.apply(step)
    assert lb.files[f"{HAPROXY_CFG}.kindfix-{ap.recorder.run_id}"] == original
    assert len(ap.recorder.journal.files) == 1


def test_fix_lb_without_a_shell_refuses_a_config_changed_since_it_was_read() -> None:
    cluster, snaps, nodes = dump("ha-3cp-haproxy-literal")
    lb = nodes[LB]
    ap, _ = applier(cluster, nodes, snaps)
    DistrolessEngine.make(ap)
    from kindfix import loadbalancer_write as lbmod
    rewrites = lb_rewrites(cluster, snaps[LB])
    lb.files[HAPROXY_CFG] = b"# rewritten by someone else\n"
    node = ap.nodes[LB]
    with pytest.raises(KindfixError, match="changed since it was read; nothing was changed"):
        lbmod.write_configs(ap.runtime, node, ap.recorder, rewrites)
    assert lb.files[HAPROXY_CFG] == b"# rewritten by someone else\n"


def test_reload_falls_back_to_the_engine_signal_when_the_image_has_no_kill() -> None:
    cluster, snaps, nodes = dump("ha-3cp-healthy")
    ap, _ = applier(cluster, nodes, snaps)
    DistrolessEngine.make(ap)
    del ap.runtime.nodes[LB].handlers[("kill", "-s", "HUP", "1")]  # type: ignore[attr-defined]
    from kindfix.loadbalancer_write import reload_haproxy
    reload_haproxy(ap.runtime, ap.nodes[LB])
    assert ap.runtime.log[-1] == f"signal {LB} SIGHUP"  # type: ignore[attr-defined]


# --- haproxy reloaded once every apiserver is ready after a repair ----------------------------

def _lb_and_said(cluster_name: str = "ha-3cp-healthy") -> tuple[Applier, list[str]]:
    cluster, snaps, nodes = dump(cluster_name)
    ap, _ = applier(cluster, nodes, snaps)
    return ap, []


@pytest.mark.parametrize(("known", "reloaded"), [(True, True), (None, True), (False, False)])
def test_haproxy_is_reloaded_once_ready_and_envoy_is_left_alone(known: bool | None,
                                                              reloaded: bool) -> None:
    from kindfix.loadbalancer_write import reload_once_ready
    ap, said = _lb_and_said()
    lb = ap.runtime.nodes[LB]  # type: ignore[attr-defined]
    lb.on(("kill", "-s", "HUP", "1"), ok())
    assert ap.cluster.load_balancer is not None
    reload_once_ready(ap.runtime, ap.cluster.load_balancer, lb, known, said.append)
    assert (("kill", "-s", "HUP", "1") in lb.calls) == reloaded
    assert len(said) == int(reloaded)
    if reloaded:
        assert said[0].startswith(f"[{LB}] reloaded haproxy: every apiserver is ready")


def test_a_reload_that_fails_is_said_and_raises_nothing() -> None:
    from kindfix.loadbalancer_write import reload_once_ready
    ap, said = _lb_and_said()
    lb = ap.runtime.nodes[LB]  # type: ignore[attr-defined]
    lb.on(("kill", "-s", "HUP", "1"), ExecResult(1, b"", b"kill: (1) - Operation not permitted"))
    assert ap.cluster.load_balancer is not None
    reload_once_ready(ap.runtime, ap.cluster.load_balancer, lb, True, said.append)
    [line] = said
    assert line.startswith(f"[{LB}] could not reload haproxy (")
    assert "Operation not permitted" in line
    assert line.endswith("its health checks bring the apiservers back within a few seconds")
