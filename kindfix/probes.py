"""Fixed in-node probe scripts and their pure parsers.

Each probe is one exec with a fixed argv (nothing interpolated), so a dump can record its output
keyed by argv and replay it offline. Output is split into sections:

    @@kindfix-section <name> <exit-code>
    <raw output of that step>
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kindfix.nodescripts import script

ETCD_PKI = "/etc/kubernetes/pki/etcd"

# Asks the local etcd member over its JSON gateway, metrics and health first
# (kindfix/scripts/etcd-probe.sh says how it stays bounded without quorum).
ETCD_PROBE: tuple[str, ...] = ("sh", "-c", script("etcd-probe"), "kindfix-etcd-probe")

# Static pod containers as the node's CRI sees them.
CRICTL_PS: tuple[str, ...] = ("crictl", "ps", "-a", "-o", "json")

# The node's own view of its address, the way kind's entrypoint reads it.
GETENT_SELF: tuple[str, ...] = (
    "sh", "-c", 'getent ahostsv4 "$(hostname)"; echo @@; getent ahostsv6 "$(hostname)"',
    "kindfix-getent",
)

_SECTION = re.compile(r"^@@kindfix-section (\S+) (-?\d+)$", re.MULTILINE)


def split_sections(text: str) -> dict[str, tuple[int, str]]:
    """Map section name to (exit code, body) for a sectioned probe output."""
    sections: dict[str, tuple[int, str]] = {}
    matches = list(_SECTION.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections[m.group(1)] = (int(m.group(2)), text[m.end():end].strip("\n"))
    return sections


@dataclass(frozen=True)
class EtcdMember:
    id: str  # decimal string, as the JSON gateway returns it
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False


@dataclass(frozen=True)
class EtcdProbe:
    """What one control-plane node's local etcd member says."""

    reachable: bool  # the client port answered (implies quorum for member list)
    members: tuple[EtcdMember, ...]
    member_id: str | None  # this member's ID (from status)
    leader: str | None
    revision: int | None
    raft_index: int | None
    health: str | None  # raw body of /health on 2381
    has_leader: bool | None  # from metrics
    metrics_revision: int | None
    keys_total: int | None
    applied_index: int | None
    error: str | None
    cluster_id: str | None = None  # from status (or the member list's header)
    is_leader: bool | None = None  # from metrics
    raft_term: int | None = None  # from status
    db_size: int | None = None  # from status, else metrics


def _member(raw: dict[str, Any]) -> EtcdMember:
    return EtcdMember(
        id=str(raw.get("ID", "")),
        name=str(raw.get("name", "")),
        peer_urls=tuple(raw.get("peerURLs", ())),
        client_urls=tuple(raw.get("clientURLs", ())),
        is_learner=bool(raw.get("isLearner", False)),
    )


def _metric(body: str, name: str) -> int | None:
    m = re.search(rf"^{name} (\S+)$", body, re.MULTILINE)
    return int(float(m.group(1))) if m else None


def json_object(body: str) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_etcd_probe(text: str) -> EtcdProbe:
    s = split_sections(text)
    rc, body = s.get("member-list", (1, ""))
    listing = json_object(body) if rc == 0 else None
    members = tuple(_member(m) for m in (listing or {}).get("members", []))
    src, sbody = s.get("status", (1, ""))
    status = json_object(sbody) if src == 0 else None
    header = (status or {}).get("header", {})
    hrc, hbody = s.get("health", (1, ""))
    _, mbody = s.get("metrics", (1, ""))
    has_leader = _metric(mbody, "etcd_server_has_leader")
    is_leader = _metric(mbody, "etcd_server_is_leader")
    error = None
    if listing is None:
        error = body.strip().splitlines()[-1] if body.strip() else "no answer from etcd"
    return EtcdProbe(
        reachable=listing is not None,
        members=members,
        member_id=str(header["member_id"]) if "member_id" in header else None,
        leader=str(status["leader"]) if status and "leader" in status else None,
        revision=int(header["revision"]) if "revision" in header else None,
        raft_index=int(status["raftIndex"]) if status and "raftIndex" in status else None,
        health=hbody if hrc == 0 else None,
        has_leader=None if has_leader is None else has_leader == 1,
        metrics_revision=_metric(mbody, "etcd_debugging_mvcc_current_revision"),
        keys_total=_metric(mbody, "etcd_debugging_mvcc_keys_total"),
        applied_index=_metric(mbody, "etcd_server_proposals_applied_total"),
        error=error,
        cluster_id=_header_field(header or (listing or {}).get("header", {}), "cluster_id"),
        is_leader=None if is_leader is None else is_leader == 1,
        raft_term=_int_field(status, "raftTerm"),
        db_size=_int_field(status, "dbSize") or _metric(mbody, "etcd_mvcc_db_total_size_in_bytes"),
    )


def _int_field(data: dict[str, Any] | None, key: str) -> int | None:
    try:
        return int(data[key]) if data and key in data else None
    except (TypeError, ValueError):
        return None


def _header_field(header: Any, key: str) -> str | None:
    return str(header[key]) if isinstance(header, dict) and key in header else None


@dataclass(frozen=True)
class CriContainer:
    id: str
    name: str
    state: str  # CONTAINER_RUNNING, CONTAINER_EXITED, ...
    attempt: int
    pod: str


def parse_crictl_ps(text: str) -> tuple[CriContainer, ...]:
    """Parse `crictl ps -a -o json` (real crictl's shape: {"containers": [...]})."""
    data = json_object(text) or {}
    out = []
    for c in data.get("containers", []):
        labels = c.get("labels", {}) or {}
        out.append(CriContainer(
            id=str(c.get("id", "")),
            name=str((c.get("metadata") or {}).get("name", "")),
            state=str(c.get("state", "")),
            attempt=int((c.get("metadata") or {}).get("attempt", 0)),
            pod=str(labels.get("io.kubernetes.pod.name", "")),
        ))
    return tuple(out)
