"""Makes the current node IPs sticky so the next Docker restart cannot move them.

Unlike the common gist, the network is never deleted (other clusters on it stay untouched): each
node is disconnected and reconnected with `--ip`/`--ip6` set to the address it has now, one node
at a time. Docker re-applies a pinned IP at start only while it is free, so a pinned address
inside the network's --ip-range can still be taken by another container: that gets a warning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.runtime import NetworkInfo, Runtime


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


def pin(runtime: Runtime, cluster: Cluster, progress: Callable[[str], None]
        ) -> tuple[list[PinResult], list[str]]:
    net = runtime.inspect_network(cluster.network)
    if not _v4_subnet_configured(net):
        raise KindfixError(
            f"network {net.name} has no user-configured IPv4 subnet, so Docker refuses fixed IPs",
            hint="kind creates its network that way; pinning needs a network created with "
                 "--subnet (see README: Pinning)")
    for node in cluster.nodes:  # refuse before touching any node
        if not node.running:
            raise KindfixError(f"node {node.name} is {node.state}",
                               hint=f"start it with `docker start {node.name}` first")
    results = []
    for node in cluster.nodes:
        same = node.pinned_ipv4 == node.ipv4 and (node.ipv6 is None or
                                                  node.pinned_ipv6 == node.ipv6)
        if same:
            results.append(PinResult(node.name, node.ipv4, node.ipv6, False))
            continue
        progress(f"pinning {node.name} to {', '.join(node.ips())}")
        runtime.network_disconnect(cluster.network, node.name)
        try:
            runtime.network_connect(cluster.network, node.name, ipv4=node.ipv4, ipv6=node.ipv6)
        except KindfixError as e:
            # never leave a node off its network: back on as it was, then report
            runtime.network_connect(cluster.network, node.name)
            raise KindfixError(f"could not pin {node.name}: {e.message}",
                               hint="the node was reconnected without a fixed address; "
                                    "run `kindfix audit`") from e
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
        runtime.network_disconnect(cluster.network, node.name)
        runtime.network_connect(cluster.network, node.name)
        after = runtime.inspect_container(node.name).networks.get(cluster.network)
        ipv4 = after.ipv4 if after else None
        results.append(PinResult(node.name, ipv4, after.ipv6 if after else None,
                                 ipv4 != node.ipv4))
    return results
