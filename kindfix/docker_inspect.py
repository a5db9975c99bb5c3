"""`docker inspect` JSON to kindfix's ContainerInfo and NetworkInfo: pure, so the parsers are
tested on captured JSON without an engine (docker_runtime.py does the reading)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kindfix.runtime import ContainerInfo, Endpoint, NetworkInfo


def _none_if_empty(value: Any) -> str | None:
    return str(value) if value else None


def container_info(data: Mapping[str, Any]) -> ContainerInfo:
    """ContainerInfo from `docker inspect` JSON (pure)."""
    config = data.get("Config") or {}
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    endpoints = {}
    for net_name, net in networks.items():
        ipam = net.get("IPAMConfig") or {}
        endpoints[net_name] = Endpoint(
            network=net_name,
            ipv4=_none_if_empty(net.get("IPAddress")),
            ipv6=_none_if_empty(net.get("GlobalIPv6Address")),
            ipv4_config=_none_if_empty(ipam.get("IPv4Address")),
            ipv6_config=_none_if_empty(ipam.get("IPv6Address")),
            aliases=tuple(str(a) for a in net.get("Aliases") or ()),
        )
    policy = (data.get("HostConfig") or {}).get("RestartPolicy") or {}
    restart = str(policy.get("Name") or "")
    if restart == "on-failure" and policy.get("MaximumRetryCount"):
        restart = f"on-failure:{policy['MaximumRetryCount']}"
    return ContainerInfo(
        id=str(data.get("Id", "")),
        name=str(data.get("Name", "")).lstrip("/"),
        image=str(config.get("Image") or data.get("Image") or ""),
        state=str((data.get("State") or {}).get("Status", "")),
        labels=dict(config.get("Labels") or {}),
        networks=endpoints,
        restart_policy=restart,
        started_at=rfc3339_time(str((data.get("State") or {}).get("StartedAt") or "")),
    )


def rfc3339_time(text: str) -> float | None:
    """Docker's (and Podman's) RFC 3339 time with nanoseconds and a zone as a Unix time (pure);
    None for the zero time of a container that never started, or anything else."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if m is None:
        return None
    zone = "+00:00" if m[3] == "Z" else m[3]
    t = datetime.fromisoformat(m[1] + (m[2] or "")[:7] + zone).timestamp()
    return t if t > 0 else None


def network_info(data: Mapping[str, Any]) -> NetworkInfo:
    """NetworkInfo from `docker network inspect` JSON (pure)."""
    pools = (data.get("IPAM") or {}).get("Config") or []
    return NetworkInfo(
        name=str(data.get("Name", "")),
        id=str(data.get("Id", "")),
        driver=str(data.get("Driver", "")),
        subnets=tuple(str(p["Subnet"]) for p in pools if p.get("Subnet")),
        ip_ranges=tuple(str(p["IPRange"]) for p in pools if p.get("IPRange")),
        gateways=tuple(str(p["Gateway"]) for p in pools if p.get("Gateway")),
        enable_ipv6=bool(data.get("EnableIPv6", False)),
    )
