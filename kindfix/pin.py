"""Makes the current node IPs sticky so the next Docker restart cannot move them.

Unlike the common gist, the network is never deleted (other clusters on it stay untouched): each
node is disconnected and reconnected with `--ip`/`--ip6` set to the address it has now, one node
at a time. Docker re-applies a pinned IP at start only while it is free, so a pinned address
inside the network's --ip-range can still be taken by another container: that gets a warning.

kind creates its network with a user IPv6 subnet but lets Docker allocate the IPv4 one
(pkg/cluster/internal/providers/docker/network.go), and `docker network inspect` lists that
subnet like a configured one, yet Docker refuses `--ip` on it ("user specified IP address is
supported only when connecting to networks with user configured subnets"). So before any node
is disconnected, Docker is asked: connecting a node that is already on the network with `--ip`
fails on the address first (auto-allocated subnet) or else because the endpoint exists; nothing
changes either way. A node is reconnected with its aliases; if a connect with --ip still fails,
it is reconnected as it was (aliases, and a check that it got its address back).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.runtime import Endpoint, NetworkInfo, Runtime

# moby daemon/network.go errUserSpecifiedIPNotSupported (what `docker network connect --ip` says)
NOT_USER_SUBNET = "supported only when connecting to networks with user configured subnets"
_NO_FIXED_IPS_HINT = ("kind creates its network with an IPv4 subnet Docker allocates; pinning "
                      "needs a network created with --subnet (see README: Pinning)")


@dataclass(frozen=True)
class PinResult:
    node: str
    ipv4: str | None
    ipv6: str | None
    changed: bool


def _v4_subnet_configured(net: NetworkInfo) -> bool:
    return any(ipaddress.ip_network(s, strict=False).version == 4 for s in net.subnets)


def range_warnings(net: NetworkInfo, ips: list[str]) -> list[str]:
    ranges = [ipaddress.ip_network(r, strict=False) for r in net.ip_ranges] or [
        ipaddress.ip_network(s, strict=False) for s in net.subnets]
    inside = [ip for ip in ips
              if any(ipaddress.ip_address(ip).version == r.version and
                     ipaddress.ip_address(ip) in r for r in ranges)]
    if not inside:
        return []
    return [f"{', '.join(inside)} lie inside the range Docker hands out on {net.name}: a "
            "container started before a node may take its address (a network whose "
            "--ip-range excludes the node addresses rules that out)"]


def _endpoint(runtime: Runtime, network: str, name: str) -> Endpoint | None:
    return runtime.inspect_container(name).networks.get(network)


def _user_aliases(runtime: Runtime, name: str, ep: Endpoint) -> list[str]:
    """The aliases to give back on reconnect: Docker adds the name and short id itself."""
    short_id = runtime.inspect_container(name).id[:12]
    return [a for a in ep.aliases if a not in (name, short_id)]


def _refuses_fixed_ips(runtime: Runtime, network: str, name: str, ep: Endpoint) -> bool:
    """Docker's answer to --ip for a node already on the network, without changing anything."""
    try:
        runtime.network_connect(network, name, ipv4=ep.ipv4, ipv6=ep.ipv6)
    except KindfixError as e:
        if NOT_USER_SUBNET in e.message:
            return True
        # Docker: "endpoint with name X already exists"; podman: "network is already connected"
        if "already exists" in e.message or "already connected" in e.message:
            return False
        raise
    return False  # connected twice cannot happen; Docker accepted the address


def _reconnect_as_before(runtime: Runtime, network: str, name: str, ep: Endpoint,
                         aliases: list[str], why: str) -> KindfixError:
    """Back on the network with its aliases (never leave a node off it); the error to raise."""
    runtime.network_connect(network, name, aliases=aliases)
    after = _endpoint(runtime, network, name)
    got = after.ipv4 if after else None
    if got != ep.ipv4:
        return KindfixError(
            f"could not pin {name}: {why}; it was reconnected but got {got} instead of "
            f"{ep.ipv4}", hint="run `kindfix repair` to follow the new address")
    return KindfixError(f"could not pin {name}: {why}",
                        hint=f"{name} was reconnected with its address {ep.ipv4} and aliases; "
                             "nothing is pinned")


def pin(runtime: Runtime, cluster: Cluster, progress: Callable[[str], None]
        ) -> tuple[list[PinResult], list[str]]:
    net = runtime.inspect_network(cluster.network)
    if not _v4_subnet_configured(net):
        raise KindfixError(
            f"network {net.name} has no user-configured IPv4 subnet, so Docker refuses fixed IPs",
            hint=_NO_FIXED_IPS_HINT)
    for node in cluster.nodes:  # refuse before touching any node
        if not node.running:
            raise KindfixError(f"node {node.name} is {node.state}",
                               hint=f"start it with `docker start {node.name}` first")
    todo = [n for n in cluster.nodes
            if not (n.pinned_ipv4 == n.ipv4 and (n.ipv6 is None or n.pinned_ipv6 == n.ipv6))]
    endpoints = {n.name: _endpoint(runtime, cluster.network, n.name) for n in todo}
    first = next(((name, ep) for name, ep in endpoints.items() if ep is not None), None)
    if first is not None and _refuses_fixed_ips(runtime, cluster.network, *first):
        raise KindfixError(
            f"Docker refuses fixed IPs on network {net.name}: its IPv4 subnet "
            f"{', '.join(net.subnets)} was allocated by Docker, not configured; nothing was "
            "changed", hint=_NO_FIXED_IPS_HINT)
    results = []
    for node in cluster.nodes:
        if node not in todo:
            results.append(PinResult(node.name, node.ipv4, node.ipv6, False))
            continue
        ep = endpoints[node.name] or Endpoint(cluster.network, node.ipv4, node.ipv6)
        aliases = _user_aliases(runtime, node.name, ep)
        progress(f"pinning {node.name} to {', '.join(node.ips())}")
        runtime.network_disconnect(cluster.network, node.name)
        try:
            runtime.network_connect(cluster.network, node.name, ipv4=node.ipv4, ipv6=node.ipv6,
                                    aliases=aliases)
        except KindfixError as e:
            raise _reconnect_as_before(runtime, cluster.network, node.name, ep, aliases,
                                       e.message) from e
        results.append(PinResult(node.name, node.ipv4, node.ipv6, True))
    warnings = range_warnings(net, [ip for n in cluster.nodes for ip in n.ips()])
    return results, warnings


def unpin(runtime: Runtime, cluster: Cluster, progress: Callable[[str], None]
          ) -> list[PinResult]:
    results = []
    for node in cluster.nodes:
        if not (node.pinned_ipv4 or node.pinned_ipv6):
            continue
        progress(f"unpinning {node.name}")
        ep = _endpoint(runtime, cluster.network, node.name)
        aliases = _user_aliases(runtime, node.name, ep) if ep else []
        runtime.network_disconnect(cluster.network, node.name)
        runtime.network_connect(cluster.network, node.name, aliases=aliases)
        after = runtime.inspect_container(node.name).networks.get(cluster.network)
        ipv4 = after.ipv4 if after else None
        results.append(PinResult(node.name, ipv4, after.ipv6 if after else None,
                                 ipv4 != node.ipv4))
    return results
