"""The addresses patches/addresses.yaml locates in node files, read and judged.

Every location marked required is either read and judged, or reported with status `unknown` and
the reason (file missing or unparseable, key or flag not where kubeadm puts it, a value that is
no address): audit never calls a node consistent that it could not read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterator, Mapping

from kindfix.addresses import by_family, malformed, node_ips, same_ip
from kindfix.discovery import Cluster, ClusterNode
from kindfix.docpath import Document, Ref
from kindfix.errors import KindfixError
from kindfix.findings import NA, OK, STALE, UNKNOWN, Finding
from kindfix.observe import NodeSnapshot
from kindfix.patches import Location, Patches
from kindfix.yamlpath import parse_document

# Files larger than this are not parsed: the biggest a kind node holds (kubeadm.conf, a manifest)
# is a few KiB, and pure-Python YAML costs ~1 s per 100 KiB.
MAX_FILE_BYTES = 1 << 20
MISSING = "file is missing"


def _judge_node_ip(value: str, node: ClusterNode) -> tuple[str, str]:
    """(status, actual) for a value that must carry only this node's IPs."""
    current = by_family(node.ipv4, node.ipv6)
    literals = node_ips(value)
    actual = ",".join(current[f] for f in sorted({lit.family for lit in literals}) if f in current)
    if not literals:
        return OK, actual or "-"
    stale = any(not same_ip(lit.text, current.get(lit.family)) for lit in literals)
    return (STALE if stale else OK), actual or "none"


def _judge_members(value: str, cluster: Cluster) -> tuple[str, str]:
    expected, stale = [], False
    for entry in filter(None, value.split(",")):
        name, _, url = entry.partition("=")
        member_node = cluster.node(name)
        lits = node_ips(url)
        if member_node is None:
            stale = True
            expected.append(f"{name}=?")
            continue
        current = by_family(member_node.ipv4, member_node.ipv6)
        fam = lits[0].family if lits else 4
        expected.append(f"{name}={current.get(fam, '?')}")
        stale |= any(not same_ip(lit.text, current.get(lit.family)) for lit in lits)
    return (STALE if stale else OK), ",".join(expected)


def _judge_endpoint(value: str, node: ClusterNode, cluster: Cluster) -> tuple[str, str]:
    literals = node_ips(value)
    endpoint = cluster.endpoint()
    allowed = [ip for n in (endpoint, node) if n for ip in n.ips()]
    if not literals:
        return OK, "hostname"
    ok = all(any(same_ip(lit.text, ip) for ip in allowed) for lit in literals)
    return (OK if ok else STALE), ",".join(dict.fromkeys(allowed))


def _judge_text(loc: Location, value: str, node: ClusterNode) -> tuple[str, str]:
    current = by_family(node.ipv4, node.ipv6).get(loc.family or 4)
    if current is None:
        return NA, "-"
    return (OK if same_ip(value, current) else STALE), current


def unjudgeable(loc: Location, ref: Ref, value: str) -> str | None:
    """Why a found value cannot be judged (it would otherwise pass as 'no address'), or None."""
    if not ref.text:
        return f"{value!r} is a YAML {'number or boolean' if value else 'scalar'}, not a string"
    if not value.strip():  # kubeadm and kind never write an empty address
        return "empty value"
    bad = malformed(value)
    if bad:
        return f"malformed address {bad[0]!r}"
    if loc.format == "text":
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return f"{value[:40]!r} is not an IPv{loc.family or 4} address"
        if ip.version != (loc.family or 4):
            return f"{value!r} is not an IPv{loc.family or 4} address"
    return None


def judge(loc: Location, value: str, node: ClusterNode, cluster: Cluster) -> tuple[str, str]:
    if loc.format == "text":
        return _judge_text(loc, value, node)
    if loc.expect == "members":
        return _judge_members(value, cluster)
    if loc.expect == "endpoint":
        return _judge_endpoint(value, node, cluster)
    return _judge_node_ip(value, node)


def parse_file(snapshot: NodeSnapshot, path: str, fmt: str, cache: dict[str, Document],
               editable: bool = False) -> Document | None:
    """The parsed file, None when it is absent; KindfixError (naming node and file) when it is
    too big or does not parse."""
    if path not in cache:
        raw = snapshot.file(path)
        if raw is None:
            return None
        source = f"{snapshot.name}:{path}"
        if len(raw) > MAX_FILE_BYTES:
            raise KindfixError(f"{source} is {len(raw)} bytes; a kind node's file is a few KiB "
                               f"(kindfix reads at most {MAX_FILE_BYTES})",
                               hint="restore it from a backup or `kindfix rollback`")
        cache[path] = parse_document(fmt, raw, source, editable)
    return cache[path]


def located_values(snapshot: NodeSnapshot, role: str, patches: Patches,
                   docs: dict[str, Document], editable: bool = False,
                   files: Container[str] | None = None) -> Iterator[tuple[Location, Ref]]:
    """Every (location, scalar) patches declares for the role that the node's files hold (only
    in `files` when given); parsed documents are kept in `docs` so a caller can change
    (editable) and dump them."""
    for loc in patches.locations_for(role):
        if files is not None and loc.file not in files:
            continue
        doc = parse_file(snapshot, loc.file, loc.format, docs, editable)
        if doc is not None:
            for ref in doc.find(loc.path):
                yield loc, ref


def location_findings(snapshot: NodeSnapshot, node: ClusterNode, cluster: Cluster,
                      patches: Patches) -> list[Finding]:
    """A finding per value found, and an `unknown` one per required location not found (one per
    file when the whole file is missing or unparseable)."""
    findings: list[Finding] = []
    docs: dict[str, Document] = {}
    unreadable: dict[str, str] = {}  # file -> why
    satisfied: set[str] = set()
    expected = ",".join(node.ips()) or "-"
    for loc in patches.locations_for(node.role):
        if loc.file in unreadable:
            continue
        try:
            doc = parse_file(snapshot, loc.file, loc.format, docs)
        except KindfixError as e:
            unreadable[loc.file] = e.message
            continue
        if doc is None:
            unreadable[loc.file] = MISSING
            continue
        for ref in doc.find(loc.path):
            value = ref.get()
            why = unjudgeable(loc, ref, value)
            if why is not None:
                status, actual = UNKNOWN, expected
            else:
                status, actual = judge(loc, value, node, cluster)
            if loc.requirement is not None:
                satisfied.add(loc.requirement)
            findings.append(Finding(node.name, loc.component, f"{loc.file}#{loc.id}", value[:200],
                                    actual, status, why or ""))
    return findings + _not_read(node, patches, satisfied, unreadable, expected)


def _not_read(node: ClusterNode, patches: Patches, satisfied: set[str],
              unreadable: Mapping[str, str], expected: str) -> list[Finding]:
    """`unknown` findings: each required location not found, and each file that could not be
    parsed (one finding per file, however much it should hold)."""
    findings: list[Finding] = []
    reported: set[str] = set()

    def file_finding(loc: Location) -> None:
        if loc.file not in reported:
            reported.add(loc.file)
            why = unreadable[loc.file]
            findings.append(Finding(node.name, loc.component, loc.file,
                                    "missing" if why == MISSING else "unreadable", expected,
                                    UNKNOWN, why))

    for requirement, locs in patches.requirements_for(node.role).items():
        if requirement in satisfied:
            continue
        if locs[0].file in unreadable:
            file_finding(locs[0])
            continue
        paths = " or ".join(lc.path for lc in locs)
        findings.append(Finding(node.name, locs[0].component, f"{locs[0].file}#{requirement}",
                                "not found", expected, UNKNOWN,
                                f"no value at {paths} (kubeadm/kind always write it: the file was "
                                "edited or restructured)"))
    # an optional file (old-ipv4) may be absent, but one that is there and cannot be parsed
    # holds something nobody can judge
    for loc in patches.locations_for(node.role):
        if unreadable.get(loc.file, MISSING) != MISSING:
            file_finding(loc)
    return findings
