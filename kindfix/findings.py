"""The unit of an audit: one advertised address and what it should be."""

from __future__ import annotations

from dataclasses import dataclass

OK, STALE, UNREACHABLE, NA = "ok", "stale", "unreachable", "n/a"
# A location kindfix expected but could not read or judge (file missing, unparseable, the key or
# flag not where kubeadm/kind put it, a malformed address). Never "broken" (nothing says the
# cluster is wrong), never "consistent" (audit exits 4), and repair refuses to plan around it.
UNKNOWN = "unknown"
STATUSES = (OK, STALE, UNREACHABLE, NA, UNKNOWN)


@dataclass(frozen=True)
class Finding:
    node: str
    component: str
    source: str  # file#location-id, or what was asked (etcd member list, container state)
    advertised: str
    actual: str
    status: str  # ok | stale | unreachable | n/a | unknown
    detail: str = ""  # why: for stale, what is wrong; for unknown, what could not be read
