"""The committed fixture dumps are what fixtures/README.md says they are.

Checks the layout (docs/dump-layout.md), the files patches/addresses.yaml reads per role,
certificate SANs, and, for healthy dumps, that every address in the files is the
node's address in kindfix-dump.json. Regenerate with `python fixtures/generate.py`.
"""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from kindfix.probes import CRICTL_PS, ETCD_PROBE, parse_crictl_ps, parse_etcd_probe

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
DUMPS = FIXTURES / "dumps"
EXPECT: dict[str, dict[str, Any]] = json.loads((FIXTURES / "expectations.json").read_text())
README = (FIXTURES / "README.md").read_text()
FILES_BY_ROLE: dict[str, list[str]] = yaml.safe_load(
    (ROOT / "patches" / "addresses.yaml").read_text()
)["files"]
NAMES = sorted(EXPECT)
HEALTHY = [n for n in NAMES if n.endswith("-healthy")]

# issue #2 item 6 and its brief: the dumps that must exist
REQUIRED = {
    "single-cp-healthy",
    "single-cp-restart-v0.14",
    "single-cp-restart-v0.15",
    "ha-3cp-healthy",
    "ha-3cp-permuted",
    "ha-3cp-haproxy-literal",
    "ha-3cp-envoy-empty",
    "ipv6-healthy",
    "ipv6-restart",
    "dualstack-healthy",
    "dualstack-restart",
    "kubeadm-v1beta2-restart",
    "kubeadm-v1beta4-healthy",
    "kubeadm-v1beta4-restart",
}
MARKERS = {
    "0.8-0.14": ["old-ipv4"],
    "0.15-0.29": ["old-ipv4", "fix_certificate"],
    ">=0.30": ["old-ipv4", "fix_certificate", "/etc/kubernetes/kubelet.conf"],
}
_IP = re.compile(r"\[?([0-9a-fA-F:.]*[.:][0-9a-fA-F:.]+)\]?")


def ips_in(text: str) -> set[str]:
    """Non-loopback IP literals (v4, v6, bracketed or not) in a text."""
    out = set()
    for m in _IP.finditer(text):
        for candidate in (m.group(1), m.group(1).rsplit(":", 1)[0]):
            try:
                ip = ipaddress.ip_address(candidate)
            except ValueError:
                continue
            if not (ip.is_loopback or ip.is_unspecified):
                out.add(str(ip))
            break
    return out


def engine(name: str) -> dict[str, Any]:
    return json.loads((DUMPS / name / "kindfix-dump.json").read_text())


def node_file(name: str, node: str, path: str) -> Path:
    return DUMPS / name / "nodes" / node / "files" / path.lstrip("/")


def commands(name: str, node: str) -> dict[tuple[str, ...], dict[str, Any]]:
    raw = json.loads((DUMPS / name / "nodes" / node / "commands.json").read_text())
    return {tuple(c["argv"]): c for c in raw}


def current_ips(container: dict[str, Any]) -> set[str]:
    net = container["networks"]["kind"]
    return {ip for ip in (net["ipv4"], net["ipv6"]) if ip}


def readme_row(name: str) -> str:
    rows = [line for line in README.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"fixtures/README.md needs one table row for {name}"
    return rows[0]


def test_every_required_dump_is_committed_and_documented() -> None:
    on_disk = {p.name for p in DUMPS.iterdir() if p.is_dir()}
    assert on_disk >= REQUIRED
    assert on_disk == set(EXPECT)
    for name in on_disk:
        readme_row(name)


@pytest.mark.parametrize("name", NAMES)
def test_engine_view_follows_the_layout(name: str) -> None:
    dump = engine(name)
    assert dump["format"] == 1
    assert dump["cluster"] == "kind"
    roles = {c["labels"]["io.x-k8s.kind.role"] for c in dump["containers"]}
    assert roles <= set(FILES_BY_ROLE)
    assert "control-plane" in roles
    for c in dump["containers"]:
        assert c["labels"]["io.x-k8s.kind.cluster"] == "kind"
        assert (DUMPS / name / "nodes" / c["name"]).is_dir()
        for cmd in json.loads((DUMPS / name / "nodes" / c["name"] / "commands.json").read_text()):
            assert set(cmd) == {"argv", "exit_code", "stdout", "stderr"}
            assert all(isinstance(a, str) for a in cmd["argv"])


@pytest.mark.parametrize("name", NAMES)
def test_each_role_has_its_files_or_documents_their_absence(name: str) -> None:
    absent = EXPECT[name]["absent"]
    row = readme_row(name)
    for c in engine(name)["containers"]:
        role = c["labels"]["io.x-k8s.kind.role"]
        for path in FILES_BY_ROLE[role]:
            exists = node_file(name, c["name"], path).is_file()
            documented = path in absent.get(c["name"], [])
            assert exists != documented, f"{c['name']}:{path}"
            if documented:
                assert f"`{path}`" in row


def _sans(path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        ext.get_values_for_type(x509.DNSName),
        [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)],
    )


@pytest.mark.parametrize("name", NAMES)
def test_certificate_sans_are_what_the_story_says(name: str) -> None:
    e = EXPECT[name]
    containers = {c["name"]: c for c in engine(name)["containers"]}
    for node, certs in e["certificates"].items():
        now = current_ips(containers[node])
        old = set(e["old_addresses"][node])
        for path, want in certs.items():
            dns, ips = _sans(node_file(name, node, path))
            assert (dns, ips) == (want["dns"], want["ips"]), f"{node}:{path}"
            vip = ips[0] if "apiserver" in path else None  # first service IP
            advertised = {ip for ip in ips if ip not in ("127.0.0.1", "::1", vip)}
            assert advertised, f"{node}:{path} names no node address"
            if e["healthy"]:
                assert advertised <= now, f"{node}:{path} must cover current IPs"
            elif "etcd" in path or e["generation"] == "0.8-0.14":
                # no entrypoint regenerates etcd certs (kind#2197); before v0.15 none does
                assert advertised <= old, f"{node}:{path} must keep the old IPs"
                assert advertised.isdisjoint(now - old)
            else:
                # v0.15+ fix_certificate regenerated the apiserver cert
                assert advertised <= now, f"{node}:{path} must cover current IPs"


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_markers_match_the_generation(name: str) -> None:
    e = EXPECT[name]
    for c in engine(name)["containers"]:
        if c["labels"]["io.x-k8s.kind.role"] == "external-load-balancer":
            continue
        script = node_file(name, c["name"], "/usr/local/bin/entrypoint").read_text()
        present = [m for m in MARKERS[">=0.30"] if m in script]
        assert present == MARKERS[e["generation"]]


def _flag_values(manifest: str, container: str) -> dict[str, str]:
    pod = yaml.safe_load(manifest)
    spec = next(c for c in pod["spec"]["containers"] if c["name"] == container)
    return dict(a[2:].split("=", 1) for a in spec["command"][1:])


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_files_agree_with_the_engine_view(name: str) -> None:
    by_name = {c["name"]: current_ips(c) for c in engine(name)["containers"]}
    for c in engine(name)["containers"]:
        role = c["labels"]["io.x-k8s.kind.role"]
        if role == "external-load-balancer":
            continue
        now = current_ips(c)
        net = c["networks"]["kind"]
        assert node_file(name, c["name"], "/kind/old-ipv4").read_text() == net["ipv4"]
        assert node_file(name, c["name"], "/kind/old-ipv6").read_text() == net["ipv6"]
        flags = node_file(name, c["name"], "/var/lib/kubelet/kubeadm-flags.env").read_text()
        node_ip = re.search(r"--node-ip=(\S+?)[\s\"]", flags)
        assert node_ip
        assert set(node_ip.group(1).split(",")) <= now
        for path in (
            "/kind/kubeadm.conf",
            "/etc/kubernetes/kubelet.conf",
            "/etc/kubernetes/manifests/etcd.yaml",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
            "/etc/kubernetes/controller-manager.conf",
            "/etc/kubernetes/scheduler.conf",
        ):
            f = node_file(name, c["name"], path)
            if f.is_file():
                # --initial-cluster names every member: checked on its own below
                text = re.sub(r"--initial-cluster=\S+", "", f.read_text())
                # the service and pod CIDRs are the only other literals kind writes
                found = {
                    ip
                    for ip in ips_in(text)
                    if not ip.startswith(("10.96.", "10.244.", "fd00:10:"))
                }
                assert found <= now, f"{c['name']}:{path}: {found - now}"
        if role == "control-plane":
            etcd = _flag_values(
                node_file(name, c["name"], "/etc/kubernetes/manifests/etcd.yaml").read_text(),
                "etcd",
            )
            assert ips_in(etcd["initial-advertise-peer-urls"]) <= now
            for member in etcd["initial-cluster"].split(","):
                member_name, url = member.split("=", 1)
                assert ips_in(url) <= by_name[member_name], member
            api = _flag_values(
                node_file(
                    name, c["name"], "/etc/kubernetes/manifests/kube-apiserver.yaml"
                ).read_text(),
                "kube-apiserver",
            )
            assert api["advertise-address"] in now


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_etcd_members_advertise_current_addresses(name: str) -> None:
    containers = engine(name)["containers"]
    by_name = {c["name"]: current_ips(c) for c in containers}
    for c in containers:
        if c["labels"]["io.x-k8s.kind.role"] != "control-plane":
            continue
        probe = parse_etcd_probe(commands(name, c["name"])[ETCD_PROBE]["stdout"])
        if EXPECT[name]["family"] == "ipv6" and "::1" not in " ".join(ETCD_PROBE):
            # etcd listens on [::1]; the probe asks 127.0.0.1 (see the README row)
            assert not probe.reachable
            continue
        assert probe.reachable
        assert probe.has_leader is True
        assert {m.name for m in probe.members} == {
            n for n, _ in by_name.items() if n.startswith("kind-control-plane")
        }
        for m in probe.members:
            assert ips_in(" ".join(m.peer_urls)) <= by_name[m.name]


@pytest.mark.parametrize("name", [n for n in NAMES if not n.endswith("-healthy")])
def test_broken_dumps_have_something_stale(name: str) -> None:
    """Every non-healthy dump keeps at least one old address or a broken load balancer."""
    e = EXPECT[name]
    dump = engine(name)
    lb = [
        c
        for c in dump["containers"]
        if c["labels"]["io.x-k8s.kind.role"] == "external-load-balancer"
    ]
    moved = any(
        set(e["old_addresses"][c["name"]]) != current_ips(c)
        for c in dump["containers"]
        if c["name"] in e["old_addresses"]
    )
    lb_broken = bool(lb) and (
        lb[0]["state"] != "running"
        or any(
            node_file(name, lb[0]["name"], p).is_file()
            and node_file(name, lb[0]["name"], p).stat().st_size == 0
            for p in FILES_BY_ROLE["external-load-balancer"]
        )
    )
    assert moved or lb_broken


def test_permuted_dump_has_lost_quorum() -> None:
    name = "ha-3cp-permuted"
    revisions = []
    for c in engine(name)["containers"]:
        if c["labels"]["io.x-k8s.kind.role"] == "external-load-balancer":
            assert c["state"] == "exited"
            continue
        if c["labels"]["io.x-k8s.kind.role"] != "control-plane":
            continue
        probe = parse_etcd_probe(commands(name, c["name"])[ETCD_PROBE]["stdout"])
        assert not probe.reachable
        assert probe.error
        assert "Operation timed out" in probe.error
        assert probe.has_leader is False
        assert probe.health == '{"health":"false","reason":"RAFT NO LEADER"}'
        revisions.append(probe.metrics_revision)
        states = {
            (x.name, x.state)
            for x in parse_crictl_ps(commands(name, c["name"])[CRICTL_PS]["stdout"])
        }
        assert ("etcd", "CONTAINER_RUNNING") in states
    assert len(set(revisions)) == 3


def test_haproxy_literal_backends_point_at_old_addresses() -> None:
    name = "ha-3cp-haproxy-literal"
    cfg = node_file(
        name, "kind-external-load-balancer", "/usr/local/etc/haproxy/haproxy.cfg"
    ).read_text()
    servers = dict(re.findall(r"server (\S+) (\S+):6443", cfg))
    containers = {c["name"]: c for c in engine(name)["containers"]}
    stale = [n for n, ip in servers.items() if ip != containers[n]["networks"]["kind"]["ipv4"]]
    assert sorted(stale) == ["kind-control-plane2", "kind-control-plane3"]
    assert "resolvers" not in cfg


def test_envoy_dump_has_empty_dynamic_config() -> None:
    name = "ha-3cp-envoy-empty"
    for p in ("/home/envoy/cds.yaml", "/home/envoy/lds.yaml"):
        assert node_file(name, "kind-external-load-balancer", p).read_text() == ""
    assert (
        "cds.yaml"
        in node_file(name, "kind-external-load-balancer", "/home/envoy/envoy.yaml").read_text()
    )


@pytest.mark.parametrize(
    ("name", "api", "as_list"),
    [
        ("kubeadm-v1beta2-restart", "v1beta2", False),
        ("kubeadm-v1beta4-healthy", "v1beta4", True),
        ("kubeadm-v1beta4-restart", "v1beta4", True),
    ],
)
def test_kubeadm_api_versions(name: str, api: str, as_list: bool) -> None:
    docs = list(
        yaml.safe_load_all(node_file(name, "kind-control-plane", "/kind/kubeadm.conf").read_text())
    )
    assert {d["apiVersion"] for d in docs if "kubeadm" in d["apiVersion"]} == {
        f"kubeadm.k8s.io/{api}"
    }
    init = next(d for d in docs if d["kind"] == "InitConfiguration")
    args = init["nodeRegistration"]["kubeletExtraArgs"]
    assert isinstance(args, list) is as_list


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_committed_dumps_are_what_the_generator_writes(tmp_path: Path) -> None:
    """Regenerating must not churn git: a changed generator or probe argv shows up here."""
    sys.path.insert(0, str(FIXTURES))
    try:
        spec = importlib.util.spec_from_file_location("fixtures_generate", FIXTURES / "generate.py")
        assert spec
        assert spec.loader
        generate = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generate)
        names = {"single-cp-healthy", "ha-3cp-permuted", "ipv6-restart"}
        expect = generate.build(tmp_path, names)
    finally:
        sys.path.remove(str(FIXTURES))
    for name in names:
        assert _tree(tmp_path / name) == _tree(DUMPS / name), name
        assert json.loads(json.dumps(expect[name])) == EXPECT[name]


@pytest.mark.parametrize("name", NAMES)
def test_serving_certs_chain_to_the_cluster_ca(name: str) -> None:
    for node in EXPECT[name]["certificates"]:
        admin = yaml.safe_load(node_file(name, node, "/etc/kubernetes/admin.conf").read_text())
        ca_pem = base64.b64decode(admin["clusters"][0]["cluster"]["certificate-authority-data"])
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificate(
            node_file(name, node, "/etc/kubernetes/pki/apiserver.crt").read_bytes()
        )
        cert.verify_directly_issued_by(ca)
