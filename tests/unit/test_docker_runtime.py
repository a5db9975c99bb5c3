"""DockerRuntime over a fake low-level client: real sockets (socketpair), no engine."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kindfix.docker_exec import FrameDemuxer
from kindfix.docker_inspect import container_info, network_info
from kindfix.docker_runtime import DockerRuntime
from kindfix.dockerhost import EngineEndpoint
from kindfix.errors import KindfixError

# Trimmed from `docker inspect kind-control-plane` (kind v0.20, dual stack, pinned IPv4).
NODE_INSPECT: dict[str, Any] = {
    "Id": "4f1c0c3e9b2a",
    "Name": "/kind-control-plane",
    "Image": "sha256:9d2c5b1f",
    "State": {"Status": "running", "Running": True,
              "StartedAt": "2026-11-28T03:24:41.123456789Z"},
    "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 1}},
    "Config": {
        "Image": "kindest/node:v1.27.3",
        "Labels": {"io.x-k8s.kind.cluster": "kind", "io.x-k8s.kind.role": "control-plane"},
    },
    "NetworkSettings": {
        "Networks": {
            "kind": {
                "IPAMConfig": {"IPv4Address": "172.18.0.200"},
                "IPAddress": "172.18.0.200",
                "GlobalIPv6Address": "fc00:f853:ccd:e793::2",
            },
            "bridge": {"IPAMConfig": None, "IPAddress": "", "GlobalIPv6Address": ""},
        }
    },
}

NETWORK_INSPECT: dict[str, Any] = {
    "Name": "kind",
    "Id": "8e1f",
    "Driver": "bridge",
    "EnableIPv6": True,
    "IPAM": {
        "Driver": "default",
        "Config": [
            {"Subnet": "172.18.0.0/16", "IPRange": "172.18.0.0/24", "Gateway": "172.18.0.1"},
            {"Subnet": "fc00:f853:ccd:e793::/64"},
        ],
    },
}

Handler = Callable[[bytes], "tuple[list[tuple[int, bytes]], int]"]


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


class FakeAPI:
    """The subset of docker.APIClient DockerRuntime uses; execs run `handler` in a thread."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler or (lambda data: ([(1, data)], 0))
        self.containers_by_name: dict[str, dict[str, Any]] = {"kind-control-plane": NODE_INSPECT}
        self.calls: list[tuple[str, Any]] = []
        self._execs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.hang = threading.Event()  # set by tests that want an exec to hang
        self.release = threading.Event()

    def ping(self) -> bool:
        return True

    def containers(self, all: bool, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.calls.append(("containers", (all, dict(filters))))
        return [{"Id": "kind-control-plane"}, {"Id": "vanished"}]

    def inspect_container(self, name: str) -> dict[str, Any]:
        if name not in self.containers_by_name:
            raise docker.errors.NotFound("404", explanation=f"No such container: {name}")
        return self.containers_by_name[name]

    def inspect_network(self, name: str) -> dict[str, Any]:
        if name != "kind":
            raise docker.errors.NotFound("404", explanation=f"network {name} not found")
        return NETWORK_INSPECT

    def exec_create(self, container: str, cmd: list[str], **kw: Any) -> dict[str, str]:
        if container == "stopped":
            raise docker.errors.APIError("409", explanation=f"Container {container} is not running")
        self.inspect_container(container)
        with self._lock:
            exec_id = f"exec{len(self._execs)}"
            self._execs[exec_id] = {"cmd": cmd, "stdin": kw["stdin"], "exit": None}
        return {"Id": exec_id}

    def exec_start(self, exec_id: str, socket: bool) -> Any:
        assert socket
        ours, theirs = _socketpair()
        threading.Thread(target=self._serve, args=(exec_id, theirs), daemon=True).start()
        return ours

    def _serve(self, exec_id: str, sock: Any) -> None:
        state = self._execs[exec_id]
        with sock, contextlib.suppress(BrokenPipeError, ConnectionResetError):
            data = b""
            if state["stdin"]:
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                data = b"".join(chunks)
            if self.hang.is_set():
                self.release.wait(10)
            frames, code = self.handler(data)
            for stream, payload in frames:
                sock.sendall(frame(stream, payload))
            state["exit"] = code

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        code = self._execs[exec_id]["exit"]
        return {"Running": code is None, "ExitCode": code}

    def start(self, name: str) -> None:
        self.calls.append(("start", name))
        self.inspect_container(name)

    def stop(self, name: str, timeout: int) -> None:
        self.calls.append(("stop", (name, timeout)))

    def connect_container_to_network(self, container: str, net: str, **kw: Any) -> None:
        self.calls.append(("connect", (container, net, kw)))

    def disconnect_container_from_network(self, container: str, net: str) -> None:
        if net != "kind":
            raise docker.errors.APIError("500", explanation="container is not connected")
        self.calls.append(("disconnect", (container, net)))


def _socketpair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


def make(handler: Handler | None = None) -> tuple[DockerRuntime, FakeAPI]:
    api = FakeAPI(handler)
    return DockerRuntime(client=api), api


def test_demuxer_splits_frames_across_chunk_boundaries() -> None:
    stream = frame(1, b"out1") + frame(2, b"err") + frame(1, b"") + frame(1, b"out2")
    demux = FrameDemuxer()
    for i in range(0, len(stream), 3):  # feed in awkward 3-byte pieces
        demux.feed(stream[i : i + 3])
    assert bytes(demux.stdout) == b"out1out2"
    assert bytes(demux.stderr) == b"err"
    assert not demux.truncated


def test_demuxer_reports_truncation() -> None:
    demux = FrameDemuxer()
    demux.feed(frame(1, b"abcdef")[:-2])
    assert demux.truncated
    assert bytes(demux.stdout) == b""


def test_container_info_from_inspect() -> None:
    info = container_info(NODE_INSPECT)
    assert info.name == "kind-control-plane"
    assert info.image == "kindest/node:v1.27.3"
    assert info.running
    assert info.restart_policy == "on-failure:1"
    assert info.labels["io.x-k8s.kind.role"] == "control-plane"
    kind = info.networks["kind"]
    assert (kind.ipv4, kind.ipv6) == ("172.18.0.200", "fc00:f853:ccd:e793::2")
    assert kind.ipv4_config == "172.18.0.200"
    assert kind.ipv6_config is None
    assert info.networks["bridge"].ipv4 is None
    assert info.started_at == 1795836281.123456  # nanoseconds cut to microseconds, UTC


@pytest.mark.parametrize(("started", "expected"), [
    ("2026-11-28T04:24:41.5+01:00", 1795836281.5),  # Podman: local time with its offset
    ("2026-11-28T03:24:41Z", 1795836281.0),
    ("0001-01-01T00:00:00Z", None),  # Docker's zero time: created, never started
    ("", None),
    ("yesterday", None),
])
def test_started_at_from_inspect(started: str, expected: float | None) -> None:
    data = {**NODE_INSPECT, "State": {"Status": "running", "StartedAt": started}}
    assert container_info(data).started_at == expected


def test_podman_container_without_restart_policy() -> None:
    data = {**NODE_INSPECT, "HostConfig": {"RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}}
    assert container_info(data).restart_policy == ""


def test_network_info_from_inspect() -> None:
    net = network_info(NETWORK_INSPECT)
    assert net.subnets == ("172.18.0.0/16", "fc00:f853:ccd:e793::/64")
    assert net.ip_ranges == ("172.18.0.0/24",)
    assert net.gateways == ("172.18.0.1",)
    assert net.enable_ipv6


def test_inspect_network_through_runtime() -> None:
    rt, _ = make()
    assert rt.inspect_network("kind").driver == "bridge"
    with pytest.raises(KindfixError, match="no network named nope"):
        rt.inspect_network("nope")


def test_list_containers_filters_by_labels_and_skips_vanished() -> None:
    rt, api = make()
    found = rt.list_containers({"io.x-k8s.kind.cluster": "kind", "io.x-k8s.kind.role": None})
    assert [c.name for c in found] == ["kind-control-plane"]
    assert api.calls[0] == (
        "containers",
        (True, {"label": ["io.x-k8s.kind.cluster=kind", "io.x-k8s.kind.role"]}),
    )


def test_exec_separates_stdout_stderr_and_exit_code() -> None:
    rt, _ = make(lambda _data: ([(1, b"hello "), (2, b"warn"), (1, b"world")], 3))
    result = rt.exec("kind-control-plane", ["sh", "-c", "x"])
    assert result.stdout == b"hello world"
    assert result.stderr == b"warn"
    assert result.exit_code == 3
    assert not result.ok


def test_exec_sends_large_stdin_and_reads_large_output() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    rt, _ = make(lambda data: ([(1, data), (2, b"%d" % len(data))], 0))
    result = rt.exec("kind-control-plane", ["cat"], stdin=payload, timeout=20)
    assert result.stdout == payload
    assert result.stderr == b"1048576"
    assert result.ok


def test_exec_empty_stdin_is_eof() -> None:
    rt, _ = make(lambda data: ([(1, b"got %d" % len(data))], 0))
    assert rt.exec("kind-control-plane", ["cat"], stdin=b"", timeout=5).stdout == b"got 0"


def test_exec_without_stdin_does_not_attach_it() -> None:
    rt, api = make()
    rt.exec("kind-control-plane", ["true"])
    assert api._execs["exec0"]["stdin"] is False
    assert api._execs["exec0"]["cmd"] == ["true"]


def test_exec_timeout_raises_kindfix_error() -> None:
    rt, api = make()
    api.hang.set()
    try:
        with pytest.raises(KindfixError, match=r"timed out after 0\.3s: docker exec"):
            rt.exec("kind-control-plane", ["sleep", "100"], timeout=0.3)
    finally:
        api.release.set()


def test_exec_reads_bytes_buffered_by_the_http_layer() -> None:
    class Reader:
        def peek(self) -> bytes:
            return frame(1, b"early ")

    class Wrapped:
        """Like the SDK's SocketIO: real socket in _sock, the HTTP response attached."""

        def __init__(self, sock: socket.socket) -> None:
            self._sock = sock
            self._response = type(
                "R", (), {"raw": type("Raw", (), {"_fp": None})(), "close": lambda _self: None}
            )()
            self._response.raw._fp = type("FP", (), {"fp": Reader()})()

        def close(self) -> None:
            self._sock.close()

    rt, api = make(lambda _d: ([(1, b"late")], 0))
    start = api.exec_start
    api.exec_start = lambda exec_id, socket: Wrapped(start(exec_id, socket))  # type: ignore[method-assign]
    assert rt.exec("kind-control-plane", ["x"]).stdout == b"early late"


@pytest.mark.parametrize(
    ("name", "message", "hint"),
    [
        ("ghost", "no container named ghost", "list them with `docker ps -a`"),
        ("stopped", "container stopped is not running", "start it: docker start stopped"),
    ],
)
def test_exec_in_missing_or_stopped_container_hints_the_fix(
    name: str, message: str, hint: str
) -> None:
    rt, _ = make()
    with pytest.raises(KindfixError) as info:
        rt.exec(name, ["true"])
    assert (info.value.message, info.value.hint) == (message, hint)


def test_concurrent_execs_do_not_mix_output() -> None:
    rt, _ = make(lambda data: ([(1, data * 3), (2, data)], len(data) % 7))

    def one(i: int) -> tuple[int, bytes, bytes, int]:
        r = rt.exec("kind-control-plane", ["x"], stdin=b"n%d;" % i, timeout=20)
        return i, r.stdout, r.stderr, r.exit_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(one, range(200)))
    for i, out, err, code in results:
        assert err == b"n%d;" % i
        assert out == err * 3
        assert code == len(err) % 7


def test_start_stop_connect_disconnect() -> None:
    rt, api = make()
    rt.start("kind-control-plane")
    rt.stop("kind-control-plane", timeout=3)
    rt.network_connect("kind", "kind-control-plane", ipv4="172.18.0.9", aliases=["cp"])
    rt.network_disconnect("kind", "kind-control-plane")
    assert api.calls == [
        ("start", "kind-control-plane"),
        ("stop", ("kind-control-plane", 3)),
        (
            "connect",
            (
                "kind-control-plane",
                "kind",
                {"ipv4_address": "172.18.0.9", "ipv6_address": None, "aliases": ["cp"]},
            ),
        ),
        ("disconnect", ("kind-control-plane", "kind")),
    ]


def test_start_missing_container() -> None:
    rt, _ = make()
    with pytest.raises(KindfixError, match="no container named ghost"):
        rt.start("ghost")


def test_api_error_becomes_one_line_with_hint() -> None:
    rt, _ = make()
    with pytest.raises(KindfixError) as info:
        rt.network_disconnect("other", "kind-control-plane")
    assert info.value.message == (
        "docker network disconnect other kind-control-plane failed: container is not connected"
    )
    assert info.value.hint is not None


class DownAPI:
    def ping(self) -> bool:
        raise requests.exceptions.ConnectionError("connection refused")

    def start(self, _name: str) -> None:
        raise requests.exceptions.ConnectionError("connection refused")


def test_ping_unreachable_engine_has_hint() -> None:
    ep = EngineEndpoint("unix:///nowhere.sock", source="DOCKER_HOST")
    rt = DockerRuntime(endpoint=ep, client=DownAPI())
    with pytest.raises(KindfixError) as info:
        rt.ping()
    assert info.value.message.startswith(
        "Cannot reach the Docker engine at unix:///nowhere.sock (DOCKER_HOST); is Docker running?"
    )
    assert info.value.hint is not None
    assert "systemctl start docker" in info.value.hint
    with pytest.raises(KindfixError, match="Cannot reach the Docker engine"):
        rt.start("x")


def test_podman_name_and_hint() -> None:
    ep = EngineEndpoint("unix:///run/podman/podman.sock", source="podman", provider="podman")
    rt = DockerRuntime(endpoint=ep, client=DownAPI())
    assert rt.name == "podman"
    with pytest.raises(KindfixError) as info:
        rt.ping()
    assert "Podman engine" in info.value.message
    assert info.value.hint is not None
    assert "podman.socket" in info.value.hint


def test_rootful_podman_hint_names_the_system_socket() -> None:
    # kind's podman provider run with sudo (rootful): the user unit would start the wrong podman
    ep = EngineEndpoint("unix:///run/podman/podman.sock", source="podman (root)",
                        provider="podman")
    with pytest.raises(KindfixError) as info:
        DockerRuntime(endpoint=ep, client=DownAPI()).ping()
    assert info.value.hint is not None
    assert "sudo systemctl start podman.socket" in info.value.hint
    assert "--user" not in info.value.hint


def test_rootless_podman_hint_names_the_user_socket() -> None:
    ep = EngineEndpoint("unix:///run/user/1000/podman/podman.sock",
                        source="podman (rootless, XDG_RUNTIME_DIR)", provider="podman")
    with pytest.raises(KindfixError) as info:
        DockerRuntime(endpoint=ep, client=DownAPI()).ping()
    assert info.value.hint is not None
    assert "systemctl --user start podman.socket" in info.value.hint


def test_permission_denied_on_podman_hints_sudo_not_the_docker_group() -> None:
    ep = EngineEndpoint("unix:///run/podman/podman.sock", source="DOCKER_HOST",
                        provider="podman")
    with pytest.raises(KindfixError) as info:
        DockerRuntime(endpoint=ep, client=DeniedAPI()).ping()
    assert info.value.message.startswith("Permission denied on the Podman engine")
    assert info.value.hint is not None
    assert "sudo" in info.value.hint
    assert "docker group" not in info.value.hint


def _relay(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(7):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)


def _relay_both(one: socket.socket, other: socket.socket) -> None:
    threads = [
        threading.Thread(target=_relay, args=pair, daemon=True)
        for pair in ((one, other), (other, one))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    one.close()
    other.close()


def _tls_pair(tmp_path: Path) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """Both ends of a socketpair wrapped in TLS (self-signed server certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "engine")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    # A relay in 7-byte pieces between the two ends, so the client sees partial TLS records
    # (recv raises SSLWantReadError) as it does on a slow network.
    a, relay_a = socket.socketpair()
    relay_b, b = socket.socketpair()
    threading.Thread(target=_relay_both, args=(relay_a, relay_b), daemon=True).start()
    with ThreadPoolExecutor(max_workers=1) as pool:
        server = pool.submit(server_ctx.wrap_socket, b, server_side=True)
        client = client_ctx.wrap_socket(a)
        return client, server.result(timeout=10)


def test_exec_output_over_tls_is_read_completely(tmp_path: Path) -> None:
    # Many small frames: TLS records hold decrypted bytes the selector cannot see.
    frames = [(1 + i % 2, b"line %d\n" % i) for i in range(2000)]
    rt, api = make(lambda _d: (frames, 0))
    client, server = _tls_pair(tmp_path)

    def exec_start(exec_id: str, socket: bool) -> ssl.SSLSocket:
        assert socket
        threading.Thread(target=api._serve, args=(exec_id, server), daemon=True).start()
        return client

    api.exec_start = exec_start  # type: ignore[method-assign]
    result = rt.exec("kind-control-plane", ["x"], timeout=20)
    assert result.stdout == b"".join(p for s, p in frames if s == 1)
    assert result.stderr == b"".join(p for s, p in frames if s == 2)


def test_stdin_over_tls_endpoint_is_refused_before_exec() -> None:
    ep = EngineEndpoint("tcp://remote:2376", source="DOCKER_HOST", tls=True, tls_verify=True)
    api = FakeAPI()
    rt = DockerRuntime(endpoint=ep, client=api)
    with pytest.raises(KindfixError, match="cannot send stdin to docker exec over a TLS"):
        rt.exec("kind-control-plane", ["cat"], stdin=b"data")
    assert api._execs == {}  # nothing was started that could read an empty stdin
    assert rt.exec("kind-control-plane", ["true"]).ok


class DeniedAPI:
    def ping(self) -> bool:
        raise requests.exceptions.ConnectionError(
            "('Connection aborted.', PermissionError(13, 'Permission denied'))"
        )


def test_permission_denied_hints_the_docker_group() -> None:
    ep = EngineEndpoint("unix:///var/run/docker.sock", source="default socket")
    rt = DockerRuntime(endpoint=ep, client=DeniedAPI())
    with pytest.raises(KindfixError) as info:
        rt.ping()
    assert info.value.message == (
        "Permission denied on the Docker engine at unix:///var/run/docker.sock (default socket)"
    )
    assert info.value.hint is not None
    assert "docker group" in info.value.hint
