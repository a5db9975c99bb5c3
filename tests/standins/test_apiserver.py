from __future__ import annotations

import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import NodeRoot, wait_for

from testbed.standins import apiserver, controlplane, health, pki, tlsclient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def etcd_bin() -> Path:
    try:
        from testbed.images import etcd_binaries

        return etcd_binaries() / "etcd"
    except Exception as e:
        pytest.skip(f"real etcd not available: {e}")


def make_pki(node: NodeRoot) -> Path:
    d = node.path("/etc/kubernetes/pki")
    ca, etcd_ca = pki.make_ca("kubernetes"), pki.make_ca("etcd-ca")
    pki.write_pair(d, "ca", ca)
    pki.write_pair(d, "etcd/ca", etcd_ca)
    pki.write_pair(d, "apiserver", pki.make_leaf(ca, "kube-apiserver", ips=["127.0.0.1"]))
    pki.write_pair(
        d,
        "etcd/server",
        pki.make_leaf(
            etcd_ca,
            "n",
            dns_names=["localhost"],
            ips=["127.0.0.1"],
            usages=(pki.SERVER, pki.CLIENT),
        ),
    )
    pki.write_pair(
        d, "apiserver-etcd-client", pki.make_client(etcd_ca, "kube-apiserver-etcd-client")
    )
    return d


def test_health_follows_real_etcd_over_mtls(node: NodeRoot, etcd_bin: Path) -> None:
    d = make_pki(node)
    client, peer, api = free_port(), free_port(), free_port()
    etcd_argv = [
        str(etcd_bin),
        "--name=n",
        f"--data-dir={node.root / 'etcd'}",
        f"--listen-client-urls=https://127.0.0.1:{client}",
        f"--advertise-client-urls=https://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=n=http://127.0.0.1:{peer}",
        f"--cert-file={d}/etcd/server.crt",
        f"--key-file={d}/etcd/server.key",
        f"--trusted-ca-file={d}/etcd/ca.crt",
        "--client-cert-auth=true",
    ]
    etcd = subprocess.Popen(etcd_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = node.spawn(
        "apiserver",
        "--bind-address=127.0.0.1",
        f"--secure-port={api}",
        f"--etcd-servers=https://127.0.0.1:{client}",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
    )
    ca_pem = (d / "ca.crt").read_bytes()
    url = f"https://127.0.0.1:{api}"

    def status(path: str) -> tuple[int, bytes] | None:
        try:
            return tlsclient.get(url + path, ca_pem)
        except tlsclient.GoError:
            return None

    try:
        assert wait_for("healthy", lambda: status("/healthz") == (200, b"ok"), timeout=10)
        code, body = status("/readyz?verbose")  # type: ignore[misc]
        assert code == 200
        assert b"[+]etcd-readiness ok" in body
        etcd.terminate()
        etcd.wait(timeout=10)
        wait_for("unhealthy", lambda: (status("/livez") or (0, b""))[0] == 500, timeout=6)
        code, body = status("/livez")  # type: ignore[misc]
        assert b"[-]etcd failed: reason withheld" in body
        assert body.endswith(b"livez check failed\n")
    finally:
        etcd.kill()
        srv.terminate()
        srv.wait(timeout=5)
    log = (node.root / "apiserver.log").read_text()
    assert (
        f'grpc: addrConn.createTransport failed to connect to {{Addr: "127.0.0.1:{client}", '
        f'ServerName: "127.0.0.1", }}. Err: connection error: desc = "transport: Error while dialing: '
        f'dial tcp 127.0.0.1:{client}: connect: connection refused"'
    ) in log


def serve_cert(tmp: Path, ca: pki.CertKey, ips: list[str]) -> tuple[int, object]:
    pair = pki.make_leaf(ca, "kube-apiserver", ips=ips)
    pki.write_pair(tmp, "srv", pair)
    port = free_port()
    srv = health.serve(
        "127.0.0.1",
        port,
        str(tmp / "srv.crt"),
        str(tmp / "srv.key"),
        lambda ep: [("ping", None)] if ep == "healthz" else None,
        reload_certs=True,
    )
    return port, srv


def link_error(
    tmp: Path, server: str, ca: pki.CertKey, component: str = "kube-controller-manager"
) -> str | None:
    client = pki.make_client(ca, f"system:{component}")
    kc = pki.parse_kubeconfig(pki.kubeconfig(server, ca, client))
    link = controlplane.ApiServerLink(component, kc, str(tmp))
    link.check_once()
    return link.error


def test_controller_manager_verifies_ca_and_san_like_go(tmp_path: Path) -> None:
    ca = pki.make_ca("kubernetes")
    port, srv = serve_cert(tmp_path, ca, ["127.0.0.2"])  # a cert for the "old" address
    try:
        err = link_error(tmp_path, f"https://127.0.0.1:{port}", ca)
        assert err == (
            f'Get "https://127.0.0.1:{port}/apis/coordination.k8s.io/v1/namespaces/kube-system/'
            f'leases/kube-controller-manager?timeout=5s": tls: failed to verify certificate: '
            f"x509: certificate is valid for 127.0.0.2, not 127.0.0.1"
        )
        other_ca = pki.make_ca("kubernetes")
        assert "x509: certificate signed by unknown authority" in str(
            link_error(tmp_path, f"https://127.0.0.1:{port}", other_ca)
        )
        # the apiserver reloads a regenerated serving pair without a restart
        time.sleep(0.01)
        pki.write_pair(tmp_path, "srv", pki.make_leaf(ca, "kube-apiserver", ips=["127.0.0.1"]))
        assert wait_for(
            "reloaded cert",
            lambda: link_error(tmp_path, f"https://127.0.0.1:{port}", ca, "kube-scheduler") is None,
            timeout=5,
        )
    finally:
        srv.shutdown()  # type: ignore[attr-defined]
        srv.server_close()  # type: ignore[attr-defined]
    closed = free_port()
    assert str(link_error(tmp_path, f"https://127.0.0.1:{closed}", ca)).endswith(
        f"dial tcp 127.0.0.1:{closed}: connect: connection refused"
    )


def test_controller_manager_health_endpoint_reflects_last_check(node: NodeRoot) -> None:
    ca = pki.make_ca("kubernetes")
    api_port, srv = serve_cert(node.root, ca, ["127.0.0.1"])
    node.write(
        "/etc/kubernetes/controller-manager.conf",
        pki.kubeconfig(
            f"https://127.0.0.1:{api_port}",
            ca,
            pki.make_client(ca, "system:kube-controller-manager"),
        ),
    )
    own = free_port()
    p = node.spawn(
        "controlplane",
        "kube-controller-manager",
        "--kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--bind-address=127.0.0.1",
        f"--secure-port={own}",
    )
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # self-signed, like the real one

    def code() -> int:
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{own}/healthz", context=ctx, timeout=2
            ) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return 0

    try:
        assert wait_for("healthy", lambda: code() == 200, timeout=8)
        srv.shutdown()  # type: ignore[attr-defined]
        srv.server_close()  # type: ignore[attr-defined]
        assert wait_for("unhealthy", lambda: code() == 500, timeout=6)
    finally:
        p.terminate()
        p.wait(timeout=5)
    log = (node.root / "controlplane.log").read_text()
    assert "error retrieving resource lock kube-system/kube-controller-manager: Get " in log
    assert f"dial tcp 127.0.0.1:{api_port}: connect: connection refused" in log


def test_apiserver_fallback_routes() -> None:
    assert apiserver.fallback("/version")[0] == 200
    assert apiserver.fallback("/api/v1/nodes")[0] == 403
    assert health.render("healthz", [("ping", None), ("etcd", "down")], verbose=False) == (
        500,
        "[+]ping ok\n[-]etcd failed: reason withheld\nhealthz check failed\n",
    )
    assert health.render("readyz", [("ping", None)], verbose=False) == (200, "ok")
