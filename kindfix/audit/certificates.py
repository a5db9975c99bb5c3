"""Whether each control plane's serving certificates cover its current address."""

from __future__ import annotations

from kindfix.addresses import by_family, node_ips, same_ip
from kindfix.audit.locations import MAX_FILE_BYTES
from kindfix.discovery import ClusterNode
from kindfix.errors import KindfixError
from kindfix.findings import OK, STALE, UNKNOWN, Finding
from kindfix.observe import NodeSnapshot
from kindfix.patches import Patches
from kindfix.x509 import parse_pem_certificates


def advertise_family(snapshot: NodeSnapshot, node: ClusterNode) -> int:
    """The address family the control plane advertises (kubeadm puts only that address in the
    certificates): from etcd's advertise URL, else the only family the node has."""
    raw = snapshot.file("/etc/kubernetes/manifests/etcd.yaml")
    if raw is not None:
        for line in raw.decode(errors="replace").splitlines():
            if "--advertise-client-urls=" in line:
                lits = node_ips(line)
                if lits:
                    return lits[0].family
    return 4 if node.ipv4 else 6


def certificate_findings(snapshot: NodeSnapshot, node: ClusterNode, patches: Patches
                         ) -> list[Finding]:
    findings = []
    wanted = by_family(node.ipv4, node.ipv6).get(advertise_family(snapshot, node))
    for spec in patches.certificates_for(node.role):
        raw = snapshot.file(spec.file)
        if raw is None:  # a real control plane always has it; a killed repair may not
            findings.append(Finding(node.name, spec.component, f"{spec.file}#SAN", "missing",
                                    wanted or "-", STALE, "certificate file is missing"))
            continue
        try:
            if len(raw) > MAX_FILE_BYTES:
                raise KindfixError(f"{len(raw)} bytes, more than any certificate")
            cert = parse_pem_certificates(raw)[0]
        except (KindfixError, IndexError) as e:
            # not "stale": nothing says its SANs are wrong, and regenerating a certificate
            # kindfix cannot read would replace something it does not understand
            why = e.message if isinstance(e, KindfixError) else "no certificate"
            findings.append(Finding(node.name, spec.component, spec.file, "unparseable",
                                    wanted or "-", UNKNOWN, f"not a PEM certificate: {why}"))
            continue
        sans = ",".join(cert.sans_ip)
        missing = [ip for ip in (wanted,) if ip and not any(same_ip(ip, s) for s in cert.sans_ip)]
        findings.append(Finding(node.name, spec.component, f"{spec.file}#SAN", sans or "-",
                                wanted or "-", STALE if missing else OK,
                                f"does not cover {', '.join(missing)}" if missing else ""))
    return findings
