"""kind's external load balancer, by kind CLI version (DOMAIN.md "Load balancer"):
v0.8 haproxy with literal backend IPs; v0.9-v0.31 haproxy resolving backends by name
(nothing to rewrite, but the container may be Exited, kind#1685); v0.32 Envoy, whose cds/lds are
empty after every restart.

Here: reading its config, judging its backends, and the new config a repair writes (pure).
Writing it is loadbalancer_write.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kindfix.addresses import find_ips, same_ip
from kindfix.discovery import Cluster, ClusterNode
from kindfix.findings import OK, STALE, UNREACHABLE, Finding
from kindfix.observe import NodeSnapshot

HAPROXY_CFG = "/usr/local/etc/haproxy/haproxy.cfg"
ENVOY_DIR = "/home/envoy"
ENVOY_CDS = f"{ENVOY_DIR}/cds.yaml"
ENVOY_LDS = f"{ENVOY_DIR}/lds.yaml"

_SERVER = re.compile(r"^\s*server\s+(?P<name>\S+)\s+(?P<addr>\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Backend:
    name: str
    address: str  # as written: a hostname or an IP literal (host part only)
    port: str


def split_host_port(addr: str) -> tuple[str, str]:
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        return host, rest.lstrip(":")
    if addr.count(":") == 1:
        host, _, port = addr.partition(":")
        return host, port
    return addr, ""


def haproxy_backends(cfg: str) -> list[Backend]:
    out = []
    for m in _SERVER.finditer(cfg):
        host, port = split_host_port(m.group("addr"))
        out.append(Backend(m.group("name"), host, port))
    return out


def _socket_addresses(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        sock = node.get("socket_address")
        if isinstance(sock, dict) and "address" in sock:
            found.append(str(sock["address"]))
        for v in node.values():
            found += _socket_addresses(v)
    elif isinstance(node, list):
        for v in node:
            found += _socket_addresses(v)
    return found


def envoy_backends(cds: bytes | None) -> list[str]:
    """Every upstream address in an Envoy CDS file (empty when the file is empty)."""
    if not cds or not cds.strip():
        return []
    try:
        data = YAML(typ="safe").load(cds.decode(errors="replace"))
    except YAMLError:
        return []
    return [a for a in _socket_addresses(data) if not a.startswith("0.0.0.0")]


def _envoy_target(cluster: Cluster, addr: str) -> ClusterNode | None:
    """The control plane an Envoy upstream address (a name or a literal IP) points at."""
    return next((n for n in cluster.control_planes
                 if addr == n.name or any(same_ip(addr, ip) for ip in n.ips())), None)


def audit_load_balancer(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot]
                        ) -> list[Finding]:
    lb = cluster.load_balancer
    if lb is None:
        return []
    if not lb.running:
        return [Finding(lb.name, "load-balancer", "container state", lb.state, "running",
                        UNREACHABLE, f"load balancer container is {lb.state.capitalize()}")]
    snap = snapshots.get(lb.name)
    if snap is None:
        return []
    findings = []
    cfg = snap.file(HAPROXY_CFG)
    if cfg is not None:
        for b in haproxy_backends(cfg.decode(errors="replace")):
            target = cluster.node(b.name)
            if not find_ips(b.address):
                findings.append(Finding(lb.name, "load-balancer", f"{HAPROXY_CFG}#{b.name}",
                                        b.address, "by name", OK))
                continue
            ok = target is not None and any(same_ip(b.address, ip) for ip in target.ips())
            actual = ",".join(target.ips()) if target else "no such node"
            findings.append(Finding(
                lb.name, "load-balancer", f"{HAPROXY_CFG}#{b.name}", b.address, actual,
                OK if ok else STALE,
                "" if ok else "load balancer routes to stale literal IPs (kind v0.8 haproxy)"))
    cds = snap.file(ENVOY_CDS)
    if cds is not None:
        addrs = envoy_backends(cds)
        if not addrs:
            findings.append(Finding(lb.name, "load-balancer", ENVOY_CDS, "no backends",
                                    ",".join(n.name for n in cluster.control_planes), STALE,
                                    "Envoy load balancer has no backends (reset on restart, "
                                    "kind v0.32)"))
        for addr in addrs:
            node = _envoy_target(cluster, addr)
            findings.append(Finding(lb.name, "load-balancer", f"{ENVOY_CDS}#{addr}", addr,
                                    node.name if node else "no such control plane",
                                    OK if node else STALE,
                                    "" if node else "Envoy routes to a stale address"))
    return findings


def _rewrite_haproxy(cfg: str, cluster: Cluster) -> str:
    """Literal backend IPs (kind CLI v0.8) -> the named node's current IP; names are kept."""
    def fix(m: re.Match[str]) -> str:
        node = cluster.node(m.group("name"))
        host, port = split_host_port(m.group("addr"))
        lits = find_ips(host)
        if node is None or not lits:
            return m.group(0)
        current = node.ipv6 if lits[0].family == 6 else node.ipv4
        if current is None or same_ip(host, current):
            return m.group(0)
        addr = f"[{current}]:{port}" if ":" in current else f"{current}:{port}"
        return m.group(0).replace(m.group("addr"), addr)

    return _SERVER.sub(fix, cfg)


def envoy_cds(cluster: Cluster, port: int = 6443) -> bytes:
    """An Envoy v3 CDS file routing to every control plane by name (STRICT_DNS follows IPs)."""
    endpoints = "".join(
        f"        - endpoint:\n            address:\n              socket_address:\n"
        f"                address: {n.name}\n                port_value: {port}\n"
        for n in cluster.control_planes)
    return (
        "resources:\n"
        "- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n"
        "  name: kube_apiservers\n  connect_timeout: 0.25s\n  type: STRICT_DNS\n"
        "  lb_policy: ROUND_ROBIN\n  load_assignment:\n    cluster_name: kube_apiservers\n"
        "    endpoints:\n    - lb_endpoints:\n" + endpoints).encode()


def envoy_lds(port: int = 6443) -> bytes:
    return (
        "resources:\n"
        "- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n"
        "  name: listener_apiserver\n  address:\n    socket_address:\n"
        f"      address: 0.0.0.0\n      port_value: {port}\n"
        "  filter_chains:\n  - filters:\n    - name: envoy.filters.network.tcp_proxy\n"
        "      typed_config:\n"
        "        \"@type\": type.googleapis.com/"
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n"
        "        stat_prefix: kube_apiservers\n        cluster: kube_apiservers\n").encode()


def lb_rewrites(cluster: Cluster, snapshot: NodeSnapshot | None) -> dict[str, tuple[bytes, bytes]]:
    """{path: (old, new)} for the load balancer's config files that need a change."""
    if snapshot is None:
        return {}
    out: dict[str, tuple[bytes, bytes]] = {}
    cfg = snapshot.file(HAPROXY_CFG)
    if cfg is not None:
        new = _rewrite_haproxy(cfg.decode(errors="replace"), cluster).encode()
        if new != cfg:
            out[HAPROXY_CFG] = (cfg, new)
    cds = snapshot.file(ENVOY_CDS)
    if cds is not None and (not envoy_backends(cds) or any(
            _envoy_target(cluster, a) is None for a in envoy_backends(cds))):
        out[ENVOY_CDS] = (cds, envoy_cds(cluster))
        lds = snapshot.file(ENVOY_LDS) or b""
        if not lds.strip() or b"socket_address" not in lds:
            out[ENVOY_LDS] = (lds, envoy_lds())
    return out
