"""DockerRuntime against the real engine.

The image is the host's own dash + coreutils (with their shared libraries) imported as a tiny
image, so nothing is pulled. Everything created carries `dev.kindfix.testbed=unit-runtime` and
is removed afterwards; leftovers of a killed run are swept first.
"""

from __future__ import annotations

import gc
import io
import ipaddress
import json
import re
import subprocess
import tarfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kindfix.docker_runtime import DockerRuntime
from kindfix.dockerhost import EngineEndpoint
from kindfix.errors import KindfixError

pytestmark = pytest.mark.docker

LABEL = "dev.kindfix.testbed=unit-runtime"
IMAGE = "kindfix-unit-runtime:test"
NETWORK = "kindfix-unit-runtime"
NODE = "kindfix-unit-runtime-node"
TOOLS = ["/bin/sh", "/bin/cat", "/bin/sleep", "/usr/bin/head", "/usr/bin/wc", "/bin/true"]
ROLE_LABEL = "dev.kindfix.unit-runtime.role"
MIB = 1024 * 1024


def docker(*args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode()}")
    return done.stdout.decode().strip()


def sweep() -> None:
    for kind in ("ps -aq", "network ls -q"):
        ids = docker(*kind.split(), "--filter", f"label={LABEL}").split()
        if ids and kind.startswith("ps"):
            docker("rm", "-f", "-v", *ids)
        elif ids:
            docker("network", "rm", *ids)
    if docker("images", "-q", IMAGE):
        docker("rmi", "-f", IMAGE)


def host_tools_tar() -> bytes:
    """A root filesystem with TOOLS and the libraries ldd says they need."""
    files: set[str] = set(TOOLS)
    for tool in TOOLS:
        ldd = subprocess.run(["ldd", tool], capture_output=True, text=True, check=True).stdout
        files.update(re.findall(r"(/\S+) \(0x", ldd))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(files):
            real = Path(path).resolve()
            info = tar.gettarinfo(str(real), arcname=path.lstrip("/"))
            with real.open("rb") as f:
                tar.addfile(info, f)
        for directory in ("tmp", "dev", "proc", "sys", "etc"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
    return buf.getvalue()


def free_subnet() -> str:
    used = []
    for net_id in docker("network", "ls", "-q").split():
        data = json.loads(docker("network", "inspect", net_id))[0]
        used += [ipaddress.ip_network(c["Subnet"]) for c in (data["IPAM"]["Config"] or [])]
    for third in range(200, 250):
        candidate = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise AssertionError("no free 10.213.x.0/24 subnet")


@pytest.fixture(scope="module")
def bed() -> Iterator[str]:
    sweep()
    try:
        docker("import", "-c", f"LABEL {LABEL}", "-", IMAGE, stdin=host_tools_tar())
        subnet = free_subnet()
        net = ipaddress.ip_network(subnet)
        docker(
            "network", "create", "--label", LABEL, "--subnet", subnet,
            "--ip-range", str(next(net.subnets(new_prefix=25))),
            "--gateway", str(next(net.hosts())), NETWORK,
        )  # fmt: skip
        docker(
            "run", "-d", "--name", NODE, "--label", LABEL, "--label", f"{ROLE_LABEL}=node",
            "--network", NETWORK,
            "--restart", "on-failure:1", IMAGE, "/bin/sleep", "3600",
        )  # fmt: skip
        yield subnet
    finally:
        sweep()


@pytest.fixture
def rt(bed: str) -> Iterator[DockerRuntime]:
    runtime = DockerRuntime()
    runtime.ping()
    yield runtime
    runtime.close()


def test_list_and_inspect(rt: DockerRuntime, bed: str) -> None:
    found = rt.list_containers({"dev.kindfix.testbed": "unit-runtime"})
    assert [c.name for c in found] == [NODE]
    node = found[0]
    assert node.running
    assert node.image == IMAGE
    assert node.restart_policy == "on-failure:1"
    ip = node.networks[NETWORK].ipv4
    assert ip is not None
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(bed)
    assert rt.list_containers({"dev.kindfix.testbed": "no-such-bed"}) == []
    assert [c.name for c in rt.list_containers({ROLE_LABEL: None})] == [NODE]


def test_inspect_network(rt: DockerRuntime, bed: str) -> None:
    net = rt.inspect_network(NETWORK)
    assert net.subnets == (bed,)
    assert net.driver == "bridge"
    assert net.ip_ranges[0].endswith("/25")
    assert net.gateways == (str(next(ipaddress.ip_network(bed).hosts())),)


def test_exec_one_mib_of_stdin_round_trips(rt: DockerRuntime) -> None:
    payload = bytes(range(256)) * (MIB // 256)
    result = rt.exec(NODE, ["cat"], stdin=payload, timeout=60)
    assert result.ok
    assert result.stdout == payload
    assert result.stderr == b""


def test_exec_separates_stderr_and_keeps_exit_code(rt: DockerRuntime) -> None:
    script = "cat; echo to-stderr >&2; echo to-stdout; exit 7"
    result = rt.exec(NODE, ["sh", "-c", script], stdin=b"in\n", timeout=30)
    assert result.exit_code == 7
    assert result.stdout == b"in\nto-stdout\n"
    assert result.stderr == b"to-stderr\n"


def test_exec_writes_a_lot_before_reading_stdin(rt: DockerRuntime) -> None:
    # 2 MiB of output before the command reads its 1 MiB of stdin: write-then-read deadlocks.
    script = "head -c 2097152 /dev/zero; wc -c"
    result = rt.exec(NODE, ["sh", "-c", script], stdin=b"x" * MIB, timeout=60)
    assert result.ok, result.stderr
    assert len(result.stdout) == 2 * MIB + len(b"1048576\n")
    assert result.stdout.endswith(b"1048576\n")


def test_exec_without_stdin(rt: DockerRuntime) -> None:
    result = rt.exec(NODE, ["sh", "-c", "echo $0-$1", "a b", "c;d"], timeout=30)
    assert result.stdout == b"a b-c;d\n"


def test_exec_missing_binary_exit_code(rt: DockerRuntime) -> None:
    result = rt.exec(NODE, ["sh", "-c", "no-such-tool"], timeout=30)
    assert result.exit_code == 127


def test_exec_timeout(rt: DockerRuntime) -> None:
    started = time.monotonic()
    with pytest.raises(KindfixError, match=r"timed out after 1s"):
        rt.exec(NODE, ["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 5


def test_many_concurrent_execs(rt: DockerRuntime) -> None:
    def one(i: int) -> tuple[int, int, bytes, bytes]:
        stdin = b"%d\n" % i * 1000
        r = rt.exec(
            NODE,
            ["sh", "-c", "cat; echo $0 >&2; exit $(($0 % 5))", str(i)],
            stdin=stdin,
            timeout=120,
        )
        return i, r.exit_code, r.stdout, r.stderr

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(60)))
    elapsed = time.monotonic() - started
    for i, code, out, err in results:
        assert code == i % 5
        assert out == b"%d\n" % i * 1000
        assert err == b"%d\n" % i
    print(f"60 concurrent execs with stdin: {elapsed:.2f}s")


def test_stop_start_and_not_running_error(rt: DockerRuntime) -> None:
    rt.stop(NODE, timeout=1)
    try:
        assert rt.inspect_container(NODE).state == "exited"
        with pytest.raises(KindfixError) as info:
            rt.exec(NODE, ["true"])
        assert info.value.message == f"container {NODE} is not running"
    finally:
        rt.start(NODE)
    assert rt.inspect_container(NODE).running


def test_network_disconnect_and_connect_with_pinned_ip(rt: DockerRuntime, bed: str) -> None:
    pinned = str(list(ipaddress.ip_network(bed).hosts())[-2])  # outside the /25 ip-range
    rt.network_disconnect(NETWORK, NODE)
    assert NETWORK not in rt.inspect_container(NODE).networks
    rt.network_connect(NETWORK, NODE, ipv4=pinned, aliases=["unit-alias"])
    endpoint = rt.inspect_container(NODE).networks[NETWORK]
    assert endpoint.ipv4 == pinned
    assert endpoint.ipv4_config == pinned
    assert endpoint.ipv6 is None


def test_errors_name_the_missing_thing(rt: DockerRuntime) -> None:
    with pytest.raises(KindfixError, match="no container named kindfix-no-such-node"):
        rt.inspect_container("kindfix-no-such-node")
    with pytest.raises(KindfixError, match="no network named kindfix-no-such-net"):
        rt.inspect_network("kindfix-no-such-net")
    with pytest.raises(KindfixError, match="no container named kindfix-no-such-node"):
        rt.exec("kindfix-no-such-node", ["true"])


def test_dead_socket_is_a_clear_error(tmp_path: Path) -> None:
    ep = EngineEndpoint(f"unix://{tmp_path}/none.sock", source="test")
    # The SDK's unix transport leaks the socket whose connect() failed; collect it here, where
    # that known ResourceWarning is expected, instead of in some later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(KindfixError) as info:
            DockerRuntime(endpoint=ep).ping()
        message, hint = info.value.message, info.value.hint
        del info  # its traceback holds the leaked socket
        gc.collect()
    assert message == (
        f"Cannot reach the Docker engine at unix://{tmp_path}/none.sock (test); "
        "is Docker running? (no socket there)"
    )
    assert hint is not None
