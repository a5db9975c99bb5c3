from __future__ import annotations

import textwrap

import pytest
from conftest import NodeRoot, Result, run_main

from testbed.standins import kubeadm, kubeadm_certs, pki
from testbed.standins.kubeadm_config import ConfigError, KubeadmConfig, parse

KIND_V1BETA3 = textwrap.dedent("""\
    apiVersion: kubeadm.k8s.io/v1beta3
    kind: ClusterConfiguration
    apiServer:
      certSANs: [localhost, 127.0.0.1]
    controlPlaneEndpoint: kind-external-load-balancer:6443
    networking: {dnsDomain: cluster.local, podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/16}
    ---
    apiVersion: kubeadm.k8s.io/v1beta3
    kind: InitConfiguration
    localAPIEndpoint: {advertiseAddress: 172.18.0.3, bindPort: 6443}
    nodeRegistration: {name: kind-control-plane2, kubeletExtraArgs: {node-ip: 172.18.0.3}}
    ---
    apiVersion: kubeadm.k8s.io/v1beta3
    kind: JoinConfiguration
    controlPlane: {localAPIEndpoint: {advertiseAddress: 172.18.0.3, bindPort: 6443}}
    nodeRegistration: {name: kind-control-plane2}
    ---
    apiVersion: kubelet.config.k8s.io/v1beta1
    kind: KubeletConfiguration
    cgroupDriver: systemd
    """)


JOIN_CERTS = ("join", "phase", "control-plane-prepare", "certs", "--config", "/kind/kubeadm.conf")


def certs_phase(capsys: pytest.CaptureFixture[str], phase: str) -> Result:
    """`kubeadm init phase certs <phase>` on kind's config, as kind's fix_certificate runs it."""
    return run_main(
        capsys, kubeadm.main, "init", "phase", "certs", phase, "--config", "/kind/kubeadm.conf"
    )


def cfg(**kw: object) -> KubeadmConfig:
    return KubeadmConfig(
        **{"node_name": "kind-control-plane", "advertise_address": "172.18.0.2", **kw}
    )  # type: ignore[arg-type]


def test_parse_kind_config_all_api_versions() -> None:
    for version in ("v1beta2", "v1beta3", "v1beta4"):
        c = parse(
            KIND_V1BETA3.replace("v1beta3", version),
            hostname=lambda: "h",
            address=lambda: "9.9.9.9",
        )
        assert c.node_name == "kind-control-plane2"
        assert c.advertise_address == "172.18.0.3"
        assert c.control_plane_endpoint == "kind-external-load-balancer:6443"
        assert c.cert_sans == ("localhost", "127.0.0.1")
        assert c.apiserver_virtual_ip == "10.96.0.1"
    with pytest.raises(ConfigError):
        parse(KIND_V1BETA3.replace("v1beta3", "v1alpha9"))


def test_join_only_config_and_defaults() -> None:
    join = textwrap.dedent("""\
        apiVersion: kubeadm.k8s.io/v1beta3
        kind: JoinConfiguration
        controlPlane: {localAPIEndpoint: {advertiseAddress: 172.18.0.4}}
        """)
    c = parse(join, hostname=lambda: "Kind-Control-Plane3", address=lambda: "9.9.9.9")
    assert (c.node_name, c.advertise_address) == ("kind-control-plane3", "172.18.0.4")
    assert c.service_subnet == "10.96.0.0/12"
    assert c.dns_domain == "cluster.local"
    worker = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\n"
    assert (
        parse(worker, hostname=lambda: "w", address=lambda: "9.9.9.9").advertise_address
        == "9.9.9.9"
    )


def test_apiserver_sans_follow_kubeadm_rules() -> None:
    dns, ips = kubeadm_certs.apiserver_alt_names(
        cfg(
            control_plane_endpoint="kind-control-plane:6443",
            cert_sans=("localhost", "127.0.0.1", "bad_name!"),
        ),
        warn=lambda _m: None,
    )
    assert dns == [
        "kind-control-plane",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ]
    assert ips == ["10.96.0.1", "172.18.0.2", "127.0.0.1"]
    _, ips = kubeadm_certs.apiserver_alt_names(cfg(control_plane_endpoint="172.18.0.9:6443"))
    assert ips == ["10.96.0.1", "172.18.0.2", "172.18.0.9"]


def test_etcd_sans() -> None:
    assert kubeadm_certs.etcd_alt_names(cfg(), (), "etcd/server") == (
        ["kind-control-plane", "localhost"],
        ["172.18.0.2", "127.0.0.1", "::1"],
    )


def test_init_phase_keeps_existing_cert_even_with_stale_sans(
    node: NodeRoot, capsys: pytest.CaptureFixture[str]
) -> None:
    node.write("/kind/kubeadm.conf", KIND_V1BETA3)
    r = certs_phase(capsys, "all")
    assert r.returncode == 0, r.stderr
    assert '[certs] Generating "etcd/server" certificate and key' in r.stdout
    pki_dir = node.path("/etc/kubernetes/pki")
    server = pki.read_pair(pki_dir, "etcd/server")
    assert pki.signed_by(server.cert, pki.read_pair(pki_dir, "etcd/ca").cert)
    assert pki.sans(server.cert)[1] == ["172.18.0.3", "127.0.0.1", "::1"]
    node.write("/kind/kubeadm.conf", KIND_V1BETA3.replace("172.18.0.3", "172.18.0.5"))
    before = (pki_dir / "apiserver.crt").read_bytes()

    # upstream runCertPhase: a cert signed by its CA is kept as is, whatever its SANs
    r = certs_phase(capsys, "apiserver")
    assert (r.returncode, r.stdout) == (
        0,
        "[certs] Using existing apiserver certificate and key on disk\n",
    )
    assert (pki_dir / "apiserver.crt").read_bytes() == before

    # the join path validates SANs and refuses
    r = run_main(capsys, kubeadm.main, *JOIN_CERTS)
    assert r.returncode == 1
    assert r.stderr.startswith(
        "error execution phase control-plane-prepare/certs: certificate apiserver is "
        "invalid: x509: certificate is valid for 10.96.0.1, 172.18.0.3, 127.0.0.1, not 172.18.0.5"
    )

    # a key left alone on disk blocks generation, as upstream
    (pki_dir / "apiserver.crt").unlink()
    r = certs_phase(capsys, "apiserver")
    assert r.returncode == 1
    assert "failure loading apiserver certificate: couldn't load the certificate file" in r.stderr

    # kind's fix_certificate: delete the pair, then the phase makes a new one
    (pki_dir / "apiserver.key").unlink()
    r = certs_phase(capsys, "apiserver")
    assert r.returncode == 0
    assert "and IPs [10.96.0.1 172.18.0.5 127.0.0.1]" in r.stdout
    assert "172.18.0.5" in pki.sans(pki.read_pair(pki_dir, "apiserver").cert)[1]


def test_cert_from_another_ca_is_refused_and_missing_ca_reported(
    node: NodeRoot, capsys: pytest.CaptureFixture[str]
) -> None:
    node.write("/kind/kubeadm.conf", KIND_V1BETA3)
    r = certs_phase(capsys, "etcd-peer")
    assert r.returncode == 1
    assert "couldn't load CA certificate etcd-ca" in r.stderr
    pki_dir = node.path("/etc/kubernetes/pki")
    pki.write_pair(pki_dir, "etcd/ca", pki.make_ca("etcd-ca"))
    pki.write_pair(pki_dir, "etcd/peer", pki.make_leaf(pki.make_ca("etcd-ca"), "x"))
    r = certs_phase(capsys, "etcd-peer")
    assert r.returncode == 1
    assert "[certs] certificate etcd/peer not signed by CA certificate etcd/ca" in r.stderr


def test_version_short_as_a_process(node: NodeRoot) -> None:
    assert node.run("kubeadm", "version", "-o", "short").stdout == "v1.29.2\n"
