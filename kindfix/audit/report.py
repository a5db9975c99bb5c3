"""What an audit returns: the nodes' facts and every finding, judged."""

from __future__ import annotations

from dataclasses import dataclass

from kindfix.audit.etcd import EtcdState
from kindfix.findings import NA, OK, UNKNOWN, Finding


@dataclass(frozen=True)
class NodeFacts:
    name: str
    role: str
    state: str
    ipv4: str | None
    ipv6: str | None
    generation: str = "unknown"  # kind node image generation, from entrypoint markers
    kind_old_ipv4: str | None = None
    etcd_image: str | None = None


@dataclass(frozen=True)
class AuditReport:
    cluster: str
    network: str
    nodes: tuple[NodeFacts, ...]
    findings: tuple[Finding, ...]
    diagnosis: tuple[str, ...]
    etcd: EtcdState

    @property
    def consistent(self) -> bool:
        return all(f.status in (OK, NA) for f in self.findings)

    @property
    def unknown(self) -> tuple[Finding, ...]:
        """What could not be read or judged (never counted as broken, never as consistent)."""
        return tuple(f for f in self.findings if f.status == UNKNOWN)
