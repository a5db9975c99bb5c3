"""Per-bed Docker networks: labelled, with a subnet no existing network (or host route) uses.

TESTBED.md: a killed run leaves networks behind and `docker network create` with an
overlapping subnet then fails ("Pool overlaps"), so pick a free one and retry on a race.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator, Mapping

import docker
from docker.errors import APIError
from docker.types import IPAMConfig, IPAMPool

CANDIDATES = ipaddress.ip_network("172.29.0.0/16")  # carved into /24s
PREFIX = 24


def used_subnets(client: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            subnet = cfg.get("Subnet")
            if subnet and ":" not in subnet:
                used.append(ipaddress.ip_network(subnet, strict=False))
    routes = subprocess.run(
        ["ip", "-4", "route", "show"], capture_output=True, text=True, check=False
    )
    for line in routes.stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if "/" in dest:
            used.append(ipaddress.ip_network(dest, strict=False))
    return used


def free_subnets(client: docker.DockerClient) -> Iterator[ipaddress.IPv4Network]:
    used = used_subnets(client)
    for cand in CANDIDATES.subnets(new_prefix=PREFIX):
        if not any(cand.overlaps(u) for u in used):
            yield cand


def create_network(
    client: docker.DockerClient, name: str, labels: Mapping[str, str], attempts: int = 8
) -> tuple[str, str]:
    """Create a bridge network on a free /24; return (name, subnet)."""
    last: Exception | None = None
    for i, subnet in enumerate(free_subnets(client)):
        if i >= attempts:
            break
        gateway = str(next(subnet.hosts()))
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=gateway)])
        try:
            client.networks.create(
                name, driver="bridge", ipam=ipam, labels=dict(labels), check_duplicate=True
            )
        except APIError as err:  # a concurrent creator took it: try the next one
            last = err
            continue
        return name, str(subnet)
    raise RuntimeError(f"no free /{PREFIX} in {CANDIDATES} for network {name}: {last}")
