"""New content for every file whose addresses are stale: key by key, never a global swap.

Pure: (node, its snapshot, the cluster, audit's findings about that snapshot) in, the changed
files out. Only the values audit called stale change, so a healthy node yields no rewrite at
all; the audit is not run again here.

A node with any location audit calls `unknown` (a file missing or unparseable, a key not where
kubeadm puts it, a malformed address, an unreadable certificate) is not planned at all, and with
it the whole repair is refused: the plan would regenerate certificates and rebuild etcd around a
location nobody has read, which may hold the very stale address that keeps the cluster broken.
The user fixes or restores the file (`kindfix audit` names each one) and runs repair again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kindfix.addresses import Literal, by_family, loopback, node_ips, replace_ips, same_ip
from kindfix.audit import located_values
from kindfix.discovery import Cluster, ClusterNode
from kindfix.errors import KindfixError
from kindfix.findings import STALE, UNKNOWN, Finding
from kindfix.observe import NodeSnapshot
from kindfix.patches import CONTROL_PLANE, ENDPOINT, LOCAL_ENDPOINT, Location, Patches
from kindfix.x509 import parse_pem_certificates
from kindfix.yamlpath import Document

APISERVER_CRT = "/etc/kubernetes/pki/apiserver.crt"


@dataclass(frozen=True)
class FileChange:
    node: str
    path: str
    old: bytes
    new: bytes
    locations: tuple[str, ...]  # location ids that changed


def _swap_to(current: dict[int, str]) -> Callable[[Literal], str | None]:
    def pick(lit: Literal) -> str | None:
        if lit.is_local or lit.family not in current:
            return None
        return current[lit.family]
    return pick


def loopback_host(snapshot: NodeSnapshot, family: int) -> str | None:
    """The loopback name the apiserver certificate covers (DOMAIN.md: kind's default certSANs
    hold 127.0.0.1; a user-set apiServerAddress leaves only the DNS SAN `localhost`)."""
    raw = snapshot.file(APISERVER_CRT)
    if raw is None:
        return None
    try:
        cert = parse_pem_certificates(raw.decode(errors="replace"))[0]
    except (KindfixError, IndexError):
        return None
    wanted = loopback(family)
    if any(same_ip(ip, wanted) for ip in cert.sans_ip):
        return wanted
    return "localhost" if "localhost" in cert.sans_dns else None


def _loopback_server(value: str, node: ClusterNode, snapshot: NodeSnapshot) -> str:
    lits = node_ips(value)
    family = lits[0].family if lits else (4 if node.ipv4 else 6)
    host = loopback_host(snapshot, family)
    if host is None:  # the certificate covers no loopback name: use the node's own address
        return replace_ips(value, _swap_to(by_family(node.ipv4, node.ipv6)))
    if host == "localhost":  # a name: drop the brackets an IPv6 literal had in the URL
        out = value
        for lit in reversed(node_ips(value)):
            start, end = lit.start, lit.end
            if value[start - 1:start] == "[" and value[end:end + 1] == "]":
                start, end = start - 1, end + 1
            out = out[:start] + "localhost" + out[end:]
        return out
    return replace_ips(value, lambda lit: None if lit.is_local else host)


def _members(value: str, cluster: Cluster) -> str:
    entries = []
    for entry in filter(None, value.split(",")):
        name, _, url = entry.partition("=")
        member = cluster.node(name)
        current = by_family(member.ipv4, member.ipv6) if member else {}
        entries.append(f"{name}={replace_ips(url, _swap_to(current))}")
    return ",".join(entries)


def new_value(loc: Location, value: str, node: ClusterNode, cluster: Cluster,
              snapshot: NodeSnapshot) -> str:
    current = by_family(node.ipv4, node.ipv6)
    if loc.format == "text":
        return current.get(loc.family or 4, value)
    if loc.repair == "loopback":
        return _loopback_server(value, node, snapshot)
    if loc.repair == "members":
        return _members(value, cluster)
    if loc.repair in (ENDPOINT, LOCAL_ENDPOINT):
        local = loc.repair == LOCAL_ENDPOINT and node.role == CONTROL_PLANE
        target = node if local else (cluster.endpoint() or node)
        return replace_ips(value, _swap_to(by_family(target.ipv4, target.ipv6)))
    return replace_ips(value, _swap_to(current))


def _reason(f: Finding) -> str:
    where = f"{f.node}:{f.source.split('#')[0]}"
    return f.detail if f.detail.startswith(where) else f"{f.node}:{f.source}: {f.detail}"


def declared_findings(findings: Iterable[Finding], node: ClusterNode, patches: Patches
                      ) -> list[Finding]:
    """The node's findings about the files patches declares for its role (its locations and
    certificates), in audit's order; etcd membership and load balancer findings are not."""
    files = {loc.file for loc in patches.locations_for(node.role)}
    files |= {c.file for c in patches.certificates_for(node.role)}
    return [f for f in findings if f.node == node.name and f.source.split("#")[0] in files]


def refuse_unknown(findings: Iterable[Finding]) -> None:
    """KindfixError naming the first location that audit could not read or judge."""
    unknown = [f for f in findings if f.status == UNKNOWN]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise KindfixError(
            f"will not plan a repair: {_reason(unknown[0])}{more}",
            hint="`kindfix audit` lists what could not be read; fix or restore those files "
                 "(`kindfix rollback` restores a run's), then run repair again")


def file_changes(snapshot: NodeSnapshot, node: ClusterNode, cluster: Cluster,
                 patches: Patches, findings: Iterable[Finding]) -> list[FileChange]:
    """The rewrites of the node's files, from audit's findings about this same snapshot: the
    values audit called stale change, nothing else. Refuses (KindfixError) when audit could
    not read or judge a location of the node."""
    mine = declared_findings(findings, node, patches)
    refuse_unknown(mine)
    ids = {loc.id for loc in patches.locations_for(node.role)}
    # audit's verdict on each value of a location, in the order the file holds them
    verdicts: dict[str, list[Finding]] = {}
    for f in mine:
        loc_id = f.source.partition("#")[2]
        if loc_id in ids:
            verdicts.setdefault(loc_id, []).append(f)
    stale_files = {f.source.split("#")[0] for fs in verdicts.values() for f in fs
                   if f.status == STALE}
    if not stale_files:
        return []
    docs: dict[str, Document] = {}
    changed: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for loc, ref in located_values(snapshot, node.role, patches, docs, editable=True,
                                   files=stale_files):
        value = ref.get()
        index = seen[loc.id] = seen.get(loc.id, -1) + 1
        found = verdicts.get(loc.id, [])
        if index >= len(found) or not value.startswith(found[index].advertised):
            # only when the findings come from another read of the node than `snapshot`
            raise KindfixError(f"will not plan a repair: {node.name}:{loc.file} holds "
                               f"{value[:80]!r} at {loc.id}, which audit did not see there",
                               hint="the file changed while kindfix read it: run repair again")
        if found[index].status != STALE:
            continue
        replacement = new_value(loc, value, node, cluster, snapshot)
        if replacement != value:
            ref.set(replacement)
            changed.setdefault(loc.file, []).append(loc.id)
    out = []
    for path, ids_changed in changed.items():
        old = snapshot.file(path) or b""
        new = docs[path].dump()
        if new != old:
            out.append(FileChange(node.name, path, old, new, tuple(ids_changed)))
    return out
