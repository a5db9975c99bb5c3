"""The unit of an audit: one advertised address and what it should be."""

from __future__ import annotations

from dataclasses import dataclass

OK, STALE, UNREACHABLE, NA = "ok", "stale", "unreachable", "n/a"
STATUSES = (OK, STALE, UNREACHABLE, NA)


@dataclass(frozen=True)
class Finding:
    node: str
    component: str
    source: str  # file#location-id, or what was asked (etcd member list, container state)
    advertised: str
    actual: str
    status: str  # ok | stale | unreachable | n/a
    detail: str = ""
