"""`kindfix pin` against the real engine, on networks made with the options kind uses
(kubernetes-sigs/kind pkg/cluster/internal/providers/docker/network.go createNetwork:
`-d=bridge -o com.docker.network.bridge.enable_ip_masquerade=true
-o com.docker.network.driver.mtu=<bridge's> --ipv6 --subnet <ULA from the name>`; the IPv4
subnet is left to Docker, which still lists it in `docker network inspect`).

Two kind-labelled sleeping containers stand in for the nodes (pinning touches only the engine).
Everything carries dev.kindfix.testbed=pin-live and is removed afterwards.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from kindfix.discovery import discover
from kindfix.docker_runtime import DockerRuntime
from kindfix.errors import KindfixError
from kindfix.pin import pin
from testbed import images as img

pytestmark = pytest.mark.docker

LABEL = "dev.kindfix.testbed=pin-live"


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()


def sweep() -> None:
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}").split()
    if ids:
        docker("rm", "-f", "-v", *ids)
    nets = docker("network", "ls", "-q", "--filter", f"label={LABEL}").split()
    if nets:
        docker("network", "rm", *nets)


def ula_subnet(name: str, attempt: int = 0) -> str:
    """kind's generateULASubnetFromName."""
    digest = hashlib.sha1(name.encode() + attempt.to_bytes(4, "little")).digest()
    raw = bytes([0xFC, 0x00]) + digest[2:8] + bytes(8)
    return str(ipaddress.IPv6Network((raw, 64)))


def kind_network(name: str, ipv4_subnet: str | None = None) -> None:
    mtu = docker("network", "inspect", "bridge", "-f",
                 '{{ index .Options "com.docker.network.driver.mtu" }}') or "1500"
    args = ["network", "create", "-d=bridge", "--label", LABEL,
            "-o", "com.docker.network.bridge.enable_ip_masquerade=true",
            "-o", f"com.docker.network.driver.mtu={mtu}",
            "--ipv6", "--subnet", ula_subnet(name)]
    if ipv4_subnet:  # the network the README's Pinning section asks for
        args += ["--subnet", ipv4_subnet, "--ip-range", ipv4_subnet.replace(".0/24", ".128/25")]
    docker(*args, name)


def endpoint(container: str, network: str) -> dict[str, object]:
    data = json.loads(docker("inspect", container))[0]
    ep = data["NetworkSettings"]["Networks"][network]
    return {"ipv4": ep["IPAddress"], "ipv6": ep["GlobalIPv6Address"],
            # besides the ones Docker adds itself: the name and the short id
            "aliases": sorted(a for a in ep["Aliases"] or () if a not in (container,
                                                                         data["Id"][:12])),
            "ipam": ep.get("IPAMConfig")}


def resolves(from_node: str, name: str) -> str:
    out = subprocess.run(["docker", "exec", from_node, "getent", "ahostsv4", name],
                         capture_output=True, text=True, timeout=30, check=False).stdout
    return out.split()[0] if out.split() else ""


@pytest.fixture
def cluster_on(bed_images: img.Images) -> Iterator[object]:
    sweep()
    made: list[str] = []

    def make(network: str, name: str, ipv4_subnet: str | None = None) -> list[str]:
        kind_network(network, ipv4_subnet)
        nodes = []
        for role, node in (("control-plane", f"{name}-control-plane"),
                           ("worker", f"{name}-worker")):
            docker("run", "-d", "--name", node, "--hostname", node, "--label", LABEL,
                   "--label", f"io.x-k8s.kind.cluster={name}",
                   "--label", f"io.x-k8s.kind.role={role}", "--restart", "on-failure:1",
                   "--network", network, "--network-alias", f"{node}-alias",
                   "--entrypoint", "sleep", bed_images.node, "600")
            nodes.append(node)
        made.extend(nodes)
        return nodes

    try:
        yield make
    finally:
        sweep()


def test_pin_on_kinds_default_network_refuses_and_leaves_every_node_as_it_was(
        cluster_on: object) -> None:
    net, name = f"kindfix-pinlive-{os.getpid()}", f"pl{os.getpid()}"
    cp, worker = cluster_on(net, name)  # type: ignore[operator]
    inspect = json.loads(docker("network", "inspect", net))[0]
    assert any(ipaddress.ip_network(c["Subnet"]).version == 4 for c in inspect["IPAM"]["Config"]), \
        "this engine does not list the allocated IPv4 subnet; the case under test needs it"
    before = {n: endpoint(n, net) for n in (cp, worker)}
    rt = DockerRuntime()
    with pytest.raises(KindfixError, match=f"Docker refuses fixed IPs on network {net}") as e:
        pin(rt, discover(rt, name, network=net), lambda _: None)
    assert "nothing was changed" in e.value.message
    after = {n: endpoint(n, net) for n in (cp, worker)}
    assert after == before  # connected, same IPv4/IPv6, same aliases
    assert before[cp]["aliases"] == [f"{cp}-alias"]
    assert resolves(worker, cp) == before[cp]["ipv4"]
    assert resolves(worker, f"{cp}-alias") == before[cp]["ipv4"]


def test_pin_on_a_network_with_a_configured_subnet_keeps_addresses_aliases_and_dns(
        cluster_on: object) -> None:
    net, name = f"kindfix-pinlive-u{os.getpid()}", f"pu{os.getpid()}"
    cp, worker = cluster_on(net, name, "172.31.251.0/24")  # type: ignore[operator]
    before = {n: endpoint(n, net) for n in (cp, worker)}
    rt = DockerRuntime()
    said: list[str] = []
    results, _ = pin(rt, discover(rt, name, network=net), said.append)
    assert {r.node for r in results if r.changed} == {cp, worker}
    for n in (cp, worker):
        got = endpoint(n, net)
        assert (got["ipv4"], got["ipv6"], got["aliases"]) == (
            before[n]["ipv4"], before[n]["ipv6"], before[n]["aliases"])
        assert got["ipam"] == {"IPv4Address": before[n]["ipv4"],
                               "IPv6Address": before[n]["ipv6"]}
    assert resolves(worker, f"{cp}-alias") == before[cp]["ipv4"]
    assert resolves(cp, worker) == before[worker]["ipv4"]
