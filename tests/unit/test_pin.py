"""Pinning node IPs in place, without deleting the network (kindfix/pin.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from kindfix.discovery import discover
from kindfix.errors import KindfixError
from kindfix.pin import pin, range_warnings, unpin
from kindfix.runtime import Endpoint, NetworkInfo
from tests.fakes import FakeRuntime, container

# kind's network as Docker shows it after `docker network create --subnet ... --ip-range ...`
PINNABLE = NetworkInfo("kind", "n1", "bridge", ("172.18.0.0/16", "fc00:f853:ccd:e793::/64"),
                       ip_ranges=("172.18.128.0/17",), gateways=("172.18.0.1",),
                       enable_ipv6=True)


class DockerLike(FakeRuntime):
    """`docker network connect` as the engine answers it: on a network whose IPv4 subnet Docker
    allocated, --ip is refused (checked first, even for a container already connected); a
    container already on the network is refused ("endpoint ... already exists"); aliases are
    kept on the endpoint beside the name and short id Docker adds."""

    auto_subnet: bool = False
    taken: tuple[str, ...] = ()  # addresses another container took meanwhile

    def network_connect(self, network: str, container: str, ipv4: str | None = None,
                        ipv6: str | None = None, aliases: Sequence[str] = ()) -> None:
        if (ipv4 or ipv6) and self.auto_subnet:
            raise KindfixError("docker network connect kind failed: Error response from daemon: "
                               "user specified IP address is supported only when connecting "
                               "to networks with user configured subnets")
        info = self.containers[container]
        if network in info.networks:
            raise KindfixError(f"docker network connect {network} {container} failed: Error "
                               f"response from daemon: endpoint with name {container} already "
                               f"exists in network {network}")
        if ipv4 in self.taken:
            raise KindfixError(f"docker network connect {network} {container} failed: Error "
                               f"response from daemon: Address already in use")
        self.log.append(f"connect {network} {container} {ipv4 or ''}".rstrip()
                        + (f" aliases={','.join(aliases)}" if aliases else ""))
        got = ipv4 or self.reconnect_ip.get(container) or "172.18.0.250"
        self.containers[container] = replace(info, networks={**info.networks, network: Endpoint(
            network, got, ipv6, ipv4, ipv6, (*aliases, container, info.id[:12]))})

    reconnect_ip: dict[str, str] = {}  # noqa: RUF012 - per instance below


def engine(network: NetworkInfo = PINNABLE, pinned: tuple[str, ...] = (),
           auto_subnet: bool = False) -> DockerLike:
    rt = DockerLike(networks={network.name: network})
    rt.auto_subnet = auto_subnet
    rt.reconnect_ip = {}
    for name, role, ip in (("kind-control-plane", "control-plane", "172.18.0.3"),
                           ("kind-worker", "worker", "172.18.0.2")):
        info = container(name, role, ip)
        ep = Endpoint("kind", ip, None, ip if name in pinned else None, None,
                      ("registry-alias", name, info.id[:12]))
        rt.add(replace(info, networks={"kind": ep}))
    return rt


def run_pin(rt: FakeRuntime) -> tuple[list[str], list[str]]:
    said: list[str] = []
    results, warnings = pin(rt, discover(rt, "kind"), said.append)
    assert {r.node for r in results} == {"kind-control-plane", "kind-worker"}
    return said, warnings


def test_refuses_a_network_without_a_user_ipv4_subnet() -> None:
    v6_only = NetworkInfo("kind", "n1", "bridge", ("fc00:f853:ccd:e793::/64",), enable_ipv6=True)
    rt = engine(v6_only)
    with pytest.raises(KindfixError, match="no user-configured IPv4 subnet") as e:
        pin(rt, discover(rt, "kind"), lambda _: None)
    assert e.value.hint
    assert "--subnet" in e.value.hint
    assert rt.log == []


def test_pins_each_unpinned_node_by_disconnect_then_connect_with_its_ip() -> None:
    rt = engine(pinned=("kind-worker",))
    said, _ = run_pin(rt)
    assert rt.log == ["disconnect kind kind-control-plane",
                      "connect kind kind-control-plane 172.18.0.3 aliases=registry-alias"]
    assert said == ["pinning kind-control-plane to 172.18.0.3"]
    ep = rt.containers["kind-control-plane"].networks["kind"]
    assert ep.ipv4_config == "172.18.0.3"


def test_pinning_twice_changes_nothing_the_second_time() -> None:
    rt = engine()
    run_pin(rt)
    rt.log.clear()
    said, _ = run_pin(rt)
    assert rt.log == []
    assert said == []


def test_warns_when_pinned_ips_lie_inside_the_ip_range() -> None:
    inside = replace(PINNABLE, ip_ranges=("172.18.0.0/24",))
    _, warnings = run_pin(engine(inside))
    assert len(warnings) == 1  # one line naming every address at risk
    assert "lie inside the range Docker hands out on kind" in warnings[0]
    assert warnings[0].count("172.18.0.") == 2
    _, outside = run_pin(engine(PINNABLE))
    assert outside == []


def test_without_an_ip_range_the_whole_subnet_is_handed_out() -> None:
    no_range = replace(PINNABLE, ip_ranges=())
    assert len(range_warnings(no_range, ["172.18.0.3", "10.0.0.1"])) == 1
    assert range_warnings(no_range, ["fc00:f853:ccd:e793::3"])[0].startswith(
        "fc00:f853:ccd:e793::3 lie inside")


def test_refuses_a_stopped_node() -> None:
    rt = engine()
    rt.containers["kind-control-plane"] = replace(rt.containers["kind-control-plane"],
                                                  state="exited")
    with pytest.raises(KindfixError, match="kind-control-plane is exited") as e:
        pin(rt, discover(rt, "kind"), lambda _: None)
    assert e.value.hint == "start it with `docker start kind-control-plane` first"


def test_a_stopped_node_is_refused_before_any_node_is_touched() -> None:
    rt = engine()
    rt.containers["kind-worker"] = replace(rt.containers["kind-worker"], state="exited")
    with pytest.raises(KindfixError, match="kind-worker is exited"):
        pin(rt, discover(rt, "kind"), lambda _: None)
    assert rt.log == []


def test_unpin_reconnects_pinned_nodes_without_an_ip() -> None:
    rt = engine(pinned=("kind-control-plane",))
    said: list[str] = []
    results = unpin(rt, discover(rt, "kind"), said.append)
    assert rt.log == ["disconnect kind kind-control-plane",
                      "connect kind kind-control-plane aliases=registry-alias"]
    assert said == ["unpinning kind-control-plane"]
    [r] = results
    # FakeRuntime hands out 172.18.0.250 to an unpinned connect: the IP changed
    assert (r.node, r.ipv4, r.changed) == ("kind-control-plane", "172.18.0.250", True)
    assert rt.containers["kind-control-plane"].networks["kind"].ipv4_config is None


def test_kinds_auto_allocated_subnet_is_refused_before_any_node_is_touched() -> None:
    """kind's own network: IPv6 subnet given, IPv4 allocated by Docker yet listed by inspect."""
    rt = engine(auto_subnet=True)
    before = dict(rt.containers)
    with pytest.raises(KindfixError, match="Docker refuses fixed IPs on network kind") as e:
        pin(rt, discover(rt, "kind"), lambda _: None)
    assert "nothing was changed" in e.value.message
    assert e.value.hint and "--subnet" in e.value.hint
    assert rt.log == []
    assert rt.containers == before  # same addresses, aliases and DNS names


def test_a_pin_refused_after_the_disconnect_reconnects_with_address_and_aliases() -> None:
    rt = engine()
    rt.taken = ("172.18.0.3",)  # another container took the address meanwhile
    rt.reconnect_ip = {"kind-control-plane": "172.18.0.3"}  # Docker hands it back on reconnect
    with pytest.raises(KindfixError, match="could not pin kind-control-plane") as e:
        pin(rt, discover(rt, "kind"), lambda _: None)
    assert e.value.hint == ("kind-control-plane was reconnected with its address 172.18.0.3 "
                            "and aliases; nothing is pinned")
    ep = rt.containers["kind-control-plane"].networks["kind"]
    assert ep.ipv4 == "172.18.0.3"
    assert "registry-alias" in ep.aliases
    assert rt.log[-1] == "connect kind kind-control-plane aliases=registry-alias"


def test_a_reconnect_that_got_another_address_says_so() -> None:
    rt = engine()
    rt.taken = ("172.18.0.3",)
    with pytest.raises(KindfixError, match="got 172.18.0.250 instead of 172.18.0.3") as e:
        pin(rt, discover(rt, "kind"), lambda _: None)
    assert e.value.hint == "run `kindfix repair` to follow the new address"


class PodmanLike(DockerLike):
    def network_connect(self, network: str, container: str, ipv4: str | None = None,
                        ipv6: str | None = None, aliases: Sequence[str] = ()) -> None:
        if network in self.containers[container].networks:
            raise KindfixError(f"podman network connect {network} {container} failed: "
                               f"container {container}: network is already connected")
        super().network_connect(network, container, ipv4, ipv6, aliases)


def test_podmans_already_connected_answer_means_fixed_ips_are_accepted() -> None:
    rt = PodmanLike(networks={"kind": PINNABLE})
    rt.reconnect_ip = {}
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.3"))
    results, _ = pin(rt, discover(rt, "kind"), lambda _: None)
    assert [(r.node, r.changed) for r in results] == [("kind-control-plane", True)]
    assert rt.log[-1] == "connect kind kind-control-plane 172.18.0.3"
