from __future__ import annotations

import pytest
from conftest import NodeRoot, Result, run_main

from testbed.standins import ctr

ETCD = "registry.k8s.io/etcd:3.5.1-0"


def test_run_uses_image_bin_and_propagates_exit_code(node: NodeRoot) -> None:
    node.image(ETCD, {"etcdctl": 'echo "etcdctl $*"; cat; exit 4\n'})
    r = node.run(
        "ctr",
        "-n",
        "k8s.io",
        "run",
        "--rm",
        "--net-host",
        "--mount",
        "type=bind,src=/etc/kubernetes/pki/etcd,dst=/etc/kubernetes/pki/etcd,options=rbind:ro",
        ETCD,
        "kindfix-etcdctl",
        "etcdctl",
        "member",
        "list",
        stdin="in\n",
    )
    assert (r.returncode, r.stdout) == (4, "etcdctl member list\nin\n")
    # --rm freed the id: it can be reused at once
    assert (
        node.run(
            "ctr", "-n", "k8s.io", "run", "--rm", "--net-host", ETCD, "kindfix-etcdctl", "etcdctl"
        ).returncode
        == 4
    )


def run_rm(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """`ctr -n k8s.io run --rm ARGS`, as kindfix runs etcdctl/etcdutl in an image."""
    return run_main(capsys, ctr.main, "-n", "k8s.io", "run", "--rm", *args)


def test_run_failures_are_clear(node: NodeRoot, capsys: pytest.CaptureFixture[str]) -> None:
    node.image(ETCD, {"etcdctl": "exit 0\n"})
    r = run_rm(capsys, "--net-host", ETCD, "x", "etcdutl", "version")
    assert r.returncode == 1
    assert 'exec: "etcdutl": executable file not found in $PATH' in r.stderr
    r = run_rm(capsys, "--mount", "type=bind,src=/a,dst=/b", ETCD, "x", "etcdctl")
    assert r.returncode == 1
    assert "src == dst" in r.stderr
    r = run_rm(capsys, "registry.k8s.io/etcd:9.9.9-0", "x", "etcdctl")
    assert (r.returncode, r.stderr) == (1, 'ctr: image "registry.k8s.io/etcd:9.9.9-0": not found\n')
    # the default namespace has no k8s images
    r = run_main(capsys, ctr.main, "run", "--rm", ETCD, "x", "etcdctl")
    assert r.returncode == 1
    assert (
        run_main(capsys, ctr.main, "-n", "k8s.io", "run", ETCD, "keep", "etcdctl").returncode == 0
    )
    r = run_main(capsys, ctr.main, "-n", "k8s.io", "run", ETCD, "keep", "etcdctl")
    assert (r.returncode, r.stderr) == (1, 'ctr: container "keep": already exists\n')


def test_images_ls(node: NodeRoot) -> None:
    node.image(ETCD)
    node.image("registry.k8s.io/etcd:3.5.1-0-etcdutl")
    node.image("registry.k8s.io/kube-apiserver:v1.29.2")
    assert node.run("ctr", "-n", "k8s.io", "images", "ls", "-q").stdout.split() == [
        ETCD,
        "registry.k8s.io/etcd:3.5.1-0-etcdutl",
        "registry.k8s.io/kube-apiserver:v1.29.2",
    ]
    assert node.run("ctr", "images", "ls", "-q").stdout == ""
