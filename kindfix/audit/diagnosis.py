"""The diagnosis: a few lines that sum the findings up for a person."""

from __future__ import annotations

from kindfix.audit.etcd import EtcdState
from kindfix.discovery import Cluster
from kindfix.findings import STALE, UNKNOWN, UNREACHABLE, Finding

UNKNOWN_SHOWN = 8  # reasons listed in the diagnosis; -o json has them all


def diagnose(findings: list[Finding], state: EtcdState, cluster: Cluster) -> list[str]:
    lines = []
    members = len(state.members) or len(cluster.control_planes)
    stale_peers = len(state.stale_members)
    if not state.members:
        stale_peers = len({f.node for f in findings if f.component == "etcd"
                           and f.status == STALE and "peer" in f.source})
    if state.quorum is False:
        lines.append(f"etcd lost quorum: {stale_peers} of {members} members advertise stale peer "
                     "URLs or certificates" if stale_peers else "etcd lost quorum")
    elif state.quorum is None and state.leaderless_majority:
        lines.append(f"etcd: {len(state.leaderless)} of {state.size} members run without a "
                     "leader (still electing one, or quorum lost: a repair waits to tell)")
    elif state.quorum is None and state.silent:
        lines.append(f"etcd: {state.silent} of {state.size} members do not answer (still "
                     "starting?): unknown, not broken")
    elif state.stale_members:
        lines.append(f"etcd: {len(state.stale_members)} of {members} members advertise stale peer "
                     "URLs (quorum intact)")
    stale = [f for f in findings if f.status == STALE]
    lb = [f for f in stale + [f for f in findings if f.status == UNREACHABLE]
          if f.component == "load-balancer"]
    lines.extend(f.detail for f in lb if f.detail)
    certs = [f for f in stale if "#SAN" in f.source]
    if certs:
        lines.append(f"{len(certs)} certificate(s) do not cover their node's current IP: "
                     + ", ".join(sorted({f'{f.node}:{f.source.split("#")[0].rsplit("/", 1)[-1]}'
                                         for f in certs})))
    other = [f for f in stale if f not in certs and f.component not in ("load-balancer",)]
    if other:
        nodes = sorted({f.node for f in other})
        lines.append(f"{len(other)} stale address(es) on {len(nodes)} node(s): {', '.join(nodes)}")
    unknown = [f for f in findings if f.status == UNKNOWN]
    if unknown:
        nodes = sorted({f.node for f in unknown})
        lines.append(f"{len(unknown)} location(s) on {len(nodes)} node(s) could not be read or "
                     f"judged ({', '.join(nodes)}): not known to be consistent")
        # the reasons, which the findings table has no column for
        lines += [f"unknown: {f.node}:{f.source}: {f.detail}" for f in unknown[:UNKNOWN_SHOWN]]
        if len(unknown) > UNKNOWN_SHOWN:
            lines.append(f"unknown: ... and {len(unknown) - UNKNOWN_SHOWN} more (-o json)")
    if not lines:
        lines.append("all addresses consistent")
    return list(dict.fromkeys(lines))
