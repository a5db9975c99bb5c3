from __future__ import annotations

import json
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
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
    elector = controlplane.LeaderElector(component, kc, str(tmp))
    elector.try_acquire_or_renew()
    return elector.error


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
        # the apiserver reloads a regenerated serving pair without a restart: the TLS error
        # goes (this server has no Lease API: what is left is its answer)
        time.sleep(0.01)
        pki.write_pair(tmp_path, "srv", pki.make_leaf(ca, "kube-apiserver", ips=["127.0.0.1"]))
        assert wait_for(
            "reloaded cert",
            lambda: "tls:" not in str(
                link_error(tmp_path, f"https://127.0.0.1:{port}", ca, "kube-scheduler")),
            timeout=5,
        )
    finally:
        srv.shutdown()  # type: ignore[attr-defined]
        srv.server_close()  # type: ignore[attr-defined]
    closed = free_port()
    assert str(link_error(tmp_path, f"https://127.0.0.1:{closed}", ca)).endswith(
        f"dial tcp 127.0.0.1:{closed}: connect: connection refused"
    )


def healthz(port: int) -> tuple[int, str]:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # self-signed, like the real one
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx,
                                    timeout=2) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()
    except OSError:
        return 0, ""


def test_a_controller_manager_cut_off_from_the_apiserver_answers_ok(node: NodeRoot) -> None:
    """client-go LeaderElector.Check: not the leader -> healthy. Only the log tells."""
    ca = pki.make_ca("kubernetes")
    closed = free_port()
    node.write(
        "/etc/kubernetes/controller-manager.conf",
        pki.kubeconfig(f"https://127.0.0.1:{closed}", ca,
                       pki.make_client(ca, "system:kube-controller-manager")),
    )
    own = free_port()
    p = node.spawn("controlplane", "kube-controller-manager",
                   "--kubeconfig=/etc/kubernetes/controller-manager.conf",
                   "--bind-address=127.0.0.1", f"--secure-port={own}")
    try:
        assert wait_for("serving", lambda: healthz(own)[0] == 200, timeout=8)
        assert healthz(own) == (200, "ok")
        log = node.root / "controlplane.log"
        wait_for("lock error logged", lambda: "error retrieving resource lock" in log.read_text())
    finally:
        p.terminate()
        p.wait(timeout=5)
    text = (node.root / "controlplane.log").read_text()
    assert "error retrieving resource lock kube-system/kube-controller-manager: Get " in text
    assert f"dial tcp 127.0.0.1:{closed}: connect: connection refused" in text


def test_check_fails_only_for_a_leader_whose_lease_ran_out(tmp_path: Path) -> None:
    ca = pki.make_ca("kubernetes")
    kc = pki.parse_kubeconfig(pki.kubeconfig("https://127.0.0.1:1", ca, pki.make_client(ca, "x")))
    e = controlplane.LeaderElector("kube-scheduler", kc, str(tmp_path), identity="n1_abc")
    assert e.check() is None  # never led
    e.observed = {"holderIdentity": "n1_abc"}
    e.observed_time = time.monotonic() - 34
    assert e.check() is None  # within 15 s + 20 s
    e.observed_time = time.monotonic() - 36
    assert e.check() == "failed election to renew leadership on lease kube-scheduler"
    e.observed = {"holderIdentity": "n2_def"}
    assert e.check() is None


def test_acquire_retry_is_client_gos_jittered_retry_period() -> None:
    """wait.Jitter(2 s, 1.2): 2 s + rand * 2.4 s, so candidates do not all retry at 2 s."""
    assert controlplane.acquire_retry(lambda: 0.0) == pytest.approx(2.0)
    assert controlplane.acquire_retry(lambda: 0.5) == pytest.approx(3.2)
    assert controlplane.acquire_retry(lambda: 1.0) == pytest.approx(4.4)
    waits = {controlplane.acquire_retry() for _ in range(50)}
    assert all(2.0 <= w <= 4.4 for w in waits) and len(waits) > 1


class _Stop:
    """A stop event that records how long run() waits each time, and stops after `n` waits."""

    def __init__(self, n: int) -> None:
        self.waits: list[float] = []
        self.n = n

    def is_set(self) -> bool:
        return len(self.waits) >= self.n

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.is_set()

    def set(self) -> None:
        self.n = 0


def test_a_candidate_waits_a_jittered_retry_a_leader_renews_every_retry_period(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = pki.make_ca("kubernetes")
    kc = pki.parse_kubeconfig(pki.kubeconfig("https://127.0.0.1:1", ca, pki.make_client(ca, "x")))
    e = controlplane.LeaderElector("kube-scheduler", kc, str(tmp_path), identity="n1_abc")
    tries = iter([False, False, True, True, True])
    monkeypatch.setattr(e, "try_acquire_or_renew", lambda: next(tries))
    jitters = iter([3.1, 4.2])
    monkeypatch.setattr(controlplane, "acquire_retry", lambda: next(jitters))
    stop = _Stop(4)
    e.run(stop)  # type: ignore[arg-type]
    assert stop.waits == [3.1, 4.2, controlplane.RETRY_PERIOD, controlplane.RETRY_PERIOD]


@pytest.fixture
def etcd_and_apiserver(node: NodeRoot, etcd_bin: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """A real etcd and the apiserver stand-in on it: (apiserver URL, pki dir, etcd process)."""
    d = make_pki(node)
    client, peer, api = free_port(), free_port(), free_port()
    etcd = subprocess.Popen([
        str(etcd_bin), "--name=n", f"--data-dir={node.root / 'etcd'}",
        f"--listen-client-urls=https://127.0.0.1:{client}",
        f"--advertise-client-urls=https://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=n=http://127.0.0.1:{peer}",
        f"--cert-file={d}/etcd/server.crt", f"--key-file={d}/etcd/server.key",
        f"--trusted-ca-file={d}/etcd/ca.crt", "--client-cert-auth=true",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = node.spawn("apiserver", "--bind-address=127.0.0.1", f"--secure-port={api}",
                     f"--etcd-servers=https://127.0.0.1:{client}",
                     "--client-ca-file=/etc/kubernetes/pki/ca.crt")
    url = f"https://127.0.0.1:{api}"
    ca_pem = (d / "ca.crt").read_bytes()

    def up() -> bool:
        try:
            return tlsclient.get(url + "/healthz", ca_pem)[0] == 200
        except tlsclient.GoError:
            return False

    try:
        wait_for("apiserver up", up, timeout=15)
        yield url, d, etcd
    finally:
        etcd.kill()
        etcd.wait(timeout=5)
        srv.terminate()
        srv.wait(timeout=5)


def elector_for(tmp: Path, url: str, d: Path, name: str, component: str = "kube-scheduler"
                ) -> controlplane.LeaderElector:
    ca = pki.CertKey(pki.load_cert((d / "ca.crt").read_bytes()),
                     pki.load_key((d / "ca.key").read_bytes()))
    kc = pki.parse_kubeconfig(pki.kubeconfig(url, ca, pki.make_client(ca, f"system:{component}")))
    work = tmp / name
    work.mkdir()
    return controlplane.LeaderElector(component, kc, str(work), identity=f"{name}_1234")


def test_leases_live_in_etcd_one_holder_renews_the_other_waits(
    node: NodeRoot, tmp_path: Path, etcd_and_apiserver: tuple[str, Path, object]
) -> None:
    url, d, _ = etcd_and_apiserver
    a = elector_for(tmp_path, url, d, "cp1")
    b = elector_for(tmp_path, url, d, "cp2")
    assert a.try_acquire_or_renew()  # created
    assert not b.try_acquire_or_renew()  # held and fresh
    assert b.error is None
    first = dict(a.observed)
    time.sleep(0.05)
    assert a.try_acquire_or_renew()  # renewed
    assert a.observed["renewTime"] > first["renewTime"]
    assert a.observed["acquireTime"] == first["acquireTime"]
    code, body = tlsclient.get(url + controlplane.GROUP_PATH + "/kube-scheduler", (d / "ca.crt").read_bytes(),
                               a.cert_file, a.key_file)
    lease = json.loads(body)
    assert code == 200
    assert lease["spec"]["holderIdentity"] == "cp1_1234"
    assert lease["spec"]["leaseDurationSeconds"] == 15
    assert int(lease["metadata"]["resourceVersion"]) > 0
    # a stale resourceVersion is refused as upstream refuses it
    lease["metadata"]["resourceVersion"] = "1"
    code, body = tlsclient.request("PUT", url + controlplane.GROUP_PATH + "/kube-scheduler",
                                   (d / "ca.crt").read_bytes(), a.cert_file, a.key_file,
                                   body=json.dumps(lease).encode())
    assert code == 409
    assert b"the object has been modified" in body
    # anonymous: forbidden
    code, _ = tlsclient.get(url + controlplane.GROUP_PATH + "/kube-scheduler", (d / "ca.crt").read_bytes())
    assert code == 403
    # the holder stops renewing: after the lease duration (observed locally) the other takes it
    assert not b.try_acquire_or_renew()  # b sees a's latest renewal...
    b.observed_time -= 16  # ...and nothing newer for longer than the lease duration
    assert b.try_acquire_or_renew()
    assert b.observed["holderIdentity"] == "cp2_1234"
    assert b.observed["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_exits(
    node: NodeRoot, tmp_path: Path, etcd_and_apiserver: tuple[str, Path, subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, d, etcd = etcd_and_apiserver
    monkeypatch.setattr(controlplane, "RETRY_PERIOD", 0.2)
    monkeypatch.setattr(controlplane, "RENEW_DEADLINE", 1.0)
    e = elector_for(tmp_path, url, d, "cp1", "kube-controller-manager")
    stop = threading.Event()
    t = threading.Thread(target=e.run, args=(stop,), daemon=True)
    t.start()
    wait_for("leader", e.is_leader, timeout=5)
    etcd.kill()  # the apiserver's storage is gone: renewals fail
    t.join(timeout=15)
    assert not t.is_alive()
    assert e.lost and stop.is_set()


def test_apiserver_without_etcd_exits_at_storage_init(node: NodeRoot) -> None:
    make_pki(node)
    closed, api = free_port(), free_port()
    r = node.run("apiserver", "--bind-address=127.0.0.1", f"--secure-port={api}",
                 f"--etcd-servers=https://127.0.0.1:{closed}",
                 KINDBED_APISERVER_STORAGE_TIMEOUT="1", timeout=20)
    assert r.returncode == 1
    assert '"command failed" err="error creating storage factory: context deadline exceeded"' \
        in r.stderr
    assert "Serving securely" not in r.stderr  # it never served
    with socket.socket() as sock:  # its port is closed again
        assert sock.connect_ex(("127.0.0.1", api)) != 0


def test_apiserver_takes_connections_it_does_not_serve_while_it_waits_for_storage(
        node: NodeRoot) -> None:
    """kube-apiserver creates its listener before the storage factory dials etcd
    (BuildGenericConfig): a client's TCP connect succeeds, its TLS handshake gets no answer
    (the kubelet's calls end in `net/http: TLS handshake timeout`, realkind runs 11-13)."""
    make_pki(node)
    closed, api = free_port(), free_port()
    proc = node.spawn("apiserver", "--bind-address=127.0.0.1", f"--secure-port={api}",
                      f"--etcd-servers=https://127.0.0.1:{closed}",
                      KINDBED_APISERVER_STORAGE_TIMEOUT="6")
    try:
        deadline = time.monotonic() + 5
        while True:  # bounded: until its port is bound
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", api)) == 0:
                    break
            assert time.monotonic() < deadline, "the port was never bound"
            time.sleep(0.1)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", api), timeout=1) as sock, \
                pytest.raises(TimeoutError):
            ctx.wrap_socket(sock)  # the handshake: no answer
        assert proc.poll() is None  # still waiting for storage
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_apiserver_waits_for_an_etcd_that_completes_no_tls_handshake(node: NodeRoot) -> None:
    """etcd without quorum accepts TCP but never completes TLS (it serves clients only once it
    has published itself through raft)."""
    make_pki(node)
    api = free_port()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        r = node.run("apiserver", "--bind-address=127.0.0.1", f"--secure-port={api}",
                     f"--etcd-servers=https://127.0.0.1:{silent.getsockname()[1]}",
                     KINDBED_APISERVER_STORAGE_TIMEOUT="3", timeout=30)
    assert r.returncode == 1
    assert "context deadline exceeded" in r.stderr


def test_apiserver_fallback_routes() -> None:
    assert apiserver.fallback("/version")[0] == 200
    assert apiserver.fallback("/api/v1/nodes")[0] == 403
    assert health.render("healthz", [("ping", None), ("etcd", "down")], verbose=False) == (
        500,
        "[+]ping ok\n[-]etcd failed: reason withheld\nhealthz check failed\n",
    )
    assert health.render("readyz", [("ping", None)], verbose=False) == (200, "ok")


def test_a_request_to_a_server_that_resets_mid_handshake_is_a_go_error() -> None:
    """A kube-apiserver stopped while a client's handshake waits in its backlog resets it; Go's
    clients (client-go's leader election) get an error and try again, so the stand-ins' client
    must raise GoError, not let the reset end the caller's thread."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]

        def reset_one() -> None:
            conn, _ = srv.accept()
            conn.recv(1)  # the ClientHello: the client is in its handshake
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # RST instead of FIN

        t = threading.Thread(target=reset_one, daemon=True)
        t.start()
        ca = pki.make_ca("kubernetes")
        with pytest.raises(tlsclient.GoError, match=r"read tcp 127\.0\.0\.1:\d+: read: "):
            tlsclient.request("GET", f"https://127.0.0.1:{port}/healthz", ca.cert_pem(),
                              timeout=2.0)
        t.join(timeout=5)
