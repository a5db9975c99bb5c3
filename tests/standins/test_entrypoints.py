from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, NodeRoot

from testbed.standins import pki

ENTRYPOINTS = REPO / "testbed/standins/rootfs/usr/local/share/kindbed/entrypoints"
OLD, NEW = "172.18.0.2", "172.18.0.3"
# a second member whose address has the old one as a prefix: the v0.8 sed's trap
ETCD = (
    f"    - --advertise-client-urls=https://{OLD}:2379\n"
    f"    - --initial-cluster=kind-control-plane=https://{OLD}:2380,kind-control-plane2=https://172.18.0.21:2380\n"
    f"    - --listen-client-urls=https://127.0.0.1:2379,https://{OLD}:2379\n"
)
PEER_ONLY = "    - --initial-cluster=kind-control-plane2=https://172.18.0.21:2380\n"


def prepare(node: NodeRoot, tmp_path: Path) -> Path:
    """Fake getent/hostname (the node's DNS answer) and a kubeadm wrapper on PATH."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    tools = {
        "hostname": "echo kind-control-plane\n",
        "getent": f'[ "$1 $2" = "ahostsv4 kind-control-plane" ] && echo "{NEW}      STREAM kind-control-plane"\n',
        "kubeadm": f'PYTHONPATH={REPO} exec {sys.executable} -m testbed.standins.kubeadm "$@"\n',
    }
    for name, body in tools.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    node.write("/etc/kubernetes/manifests/etcd.yaml", ETCD)
    node.write("/etc/kubernetes/manifests/other.yaml", PEER_ONLY)
    node.write(
        "/var/lib/kubelet/kubeadm-flags.env", f'KUBELET_KUBEADM_ARGS="--node-ip={OLD} --x=y"\n'
    )
    for conf in ("controller-manager.conf", "scheduler.conf", "kubelet.conf"):
        node.write(f"/etc/kubernetes/{conf}", f"    server: https://{OLD}:6443\n")
    node.write("/kind/kubeadm.conf", f"advertiseAddress: {OLD}\nnode-ip: {OLD}\n")
    node.write("/kind/old-ipv4", OLD)
    return bin_dir


def boot(node: NodeRoot, bin_dir: Path, generation: str) -> subprocess.CompletedProcess[str]:
    script = ENTRYPOINTS / f"entrypoint-{generation}"
    env = node.env(PATH=f"{bin_dir}:/usr/bin:/bin")
    return subprocess.run(
        ["bash", str(script), "echo", "exec'd", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def read(node: NodeRoot, p: str) -> str:
    return node.path(p).read_text()


def test_markers_identify_each_generation() -> None:
    text = {
        g: (ENTRYPOINTS / f"entrypoint-{g}").read_text() for g in ("none", "v0.8", "v0.15", "v0.30")
    }
    assert [
        ("old-ipv4" in t, "fix_certificate" in t, "/etc/kubernetes/kubelet.conf" in t)
        for t in text.values()
    ] == [(False, False, False), (True, False, False), (True, True, False), (True, True, True)]


def test_none_rewrites_nothing(node: NodeRoot, tmp_path: Path) -> None:
    bin_dir = prepare(node, tmp_path)
    node.path("/kind/old-ipv4").unlink()
    r = boot(node, bin_dir, "none")
    assert (r.returncode, r.stdout) == (0, "exec'd init\n")
    assert read(node, "/etc/kubernetes/manifests/etcd.yaml") == ETCD
    assert not node.path("/kind/old-ipv4").exists()


def test_v08_unsafe_sed_corrupts_prefix_addresses(node: NodeRoot, tmp_path: Path) -> None:
    bin_dir = prepare(node, tmp_path)
    r = boot(node, bin_dir, "v0.8")
    assert (r.returncode, r.stdout) == (0, "exec'd init\n"), r.stderr
    etcd = read(node, "/etc/kubernetes/manifests/etcd.yaml")
    assert f"--advertise-client-urls=https://{NEW}:2379" in etcd
    # no `g`: only the first match per line changes...
    assert f"--listen-client-urls=https://127.0.0.1:2379,https://{NEW}:2379" in etcd
    assert (
        f"kind-control-plane=https://{NEW}:2380,kind-control-plane2=https://172.18.0.21:2380"
        in etcd
    )
    # ...and unbounded: 172.18.0.21 is hit when it comes first on its line
    assert (
        read(node, "/etc/kubernetes/manifests/other.yaml")
        == "    - --initial-cluster=kind-control-plane2=https://172.18.0.31:2380\n"
    )
    assert f"--node-ip={NEW}" in read(node, "/var/lib/kubelet/kubeadm-flags.env")
    assert OLD in read(node, "/etc/kubernetes/controller-manager.conf")  # not rewritten by v0.8
    assert OLD in read(node, "/kind/kubeadm.conf")
    assert read(node, "/kind/old-ipv4") == NEW  # no newline, like kind


@pytest.mark.parametrize("generation", ["v0.15", "v0.30"])
def test_v015_word_bounded_rewrite_and_fix_certificate(
    node: NodeRoot, tmp_path: Path, generation: str
) -> None:
    bin_dir = prepare(node, tmp_path)
    pki_dir = node.path("/etc/kubernetes/pki")
    ca = pki.make_ca("kubernetes")
    pki.write_pair(pki_dir, "ca", ca)
    pki.write_pair(pki_dir, "apiserver", pki.make_leaf(ca, "kube-apiserver", ips=[OLD]))
    node.write(
        "/kind/kubeadm.conf",
        f"apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n"
        f"localAPIEndpoint: {{advertiseAddress: {OLD}}}\n"
        "nodeRegistration: {name: kind-control-plane}\n",
    )
    r = boot(node, bin_dir, generation)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("exec'd init\n")
    etcd = read(node, "/etc/kubernetes/manifests/etcd.yaml")
    assert OLD + ":" not in etcd
    assert "172.18.0.21:2380" in etcd
    assert read(node, "/etc/kubernetes/manifests/other.yaml") == PEER_ONLY
    for f in (
        "/etc/kubernetes/controller-manager.conf",
        "/etc/kubernetes/scheduler.conf",
        "/kind/kubeadm.conf",
        "/var/lib/kubelet/kubeadm-flags.env",
    ):
        assert OLD not in read(node, f), f
        assert NEW in read(node, f), f
    assert (NEW in read(node, "/etc/kubernetes/kubelet.conf")) == (generation == "v0.30")
    assert pki.sans(pki.read_pair(pki_dir, "apiserver").cert)[1] == ["10.96.0.1", NEW]
    assert read(node, "/kind/old-ipv4") == NEW


def test_v015_unchanged_ip_leaves_everything(node: NodeRoot, tmp_path: Path) -> None:
    bin_dir = prepare(node, tmp_path)
    node.write("/kind/old-ipv4", NEW)
    r = boot(node, bin_dir, "v0.15")
    assert r.returncode == 0, r.stderr
    assert read(node, "/etc/kubernetes/manifests/etcd.yaml") == ETCD
    assert not node.path("/etc/kubernetes/pki/apiserver.crt").exists()
