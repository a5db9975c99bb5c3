"""IP literals inside config values: find them, judge them, swap them by family.

Values look like `https://172.18.0.3:2379`, `https://[fc00::3]:2380`, `172.18.0.3`,
`172.18.0.3,fc00::3` (dual-stack node-ip), or `name=https://...,name2=https://...`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

# IPv4 dotted quads, and IPv6 either in brackets or as a whole comma/space-separated token.
_V4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
_V6_BRACKET = r"(?<=\[)[0-9A-Fa-f:.]+(?=\])"
_V6_BARE = r"(?<![\w:\[/])(?=[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:)[0-9A-Fa-f:.]+(?![\w:\]])"
_IP = re.compile(f"{_V4}|{_V6_BRACKET}|{_V6_BARE}")


@dataclass(frozen=True)
class Literal:
    text: str
    start: int
    end: int
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address

    @property
    def family(self) -> int:
        return self.ip.version

    @property
    def is_local(self) -> bool:
        """Loopback or unspecified: never a node address."""
        return self.ip.is_loopback or self.ip.is_unspecified


def find_ips(value: str) -> list[Literal]:
    out = []
    for m in _IP.finditer(value):
        try:
            ip = ipaddress.ip_address(m.group(0))
        except ValueError:
            continue
        out.append(Literal(m.group(0), m.start(), m.end(), ip))
    return out


def node_ips(value: str) -> list[Literal]:
    return [lit for lit in find_ips(value) if not lit.is_local]


def same_ip(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def by_family(ipv4: str | None, ipv6: str | None) -> dict[int, str]:
    return {f: ip for f, ip in ((4, ipv4), (6, ipv6)) if ip}


def replace_ips(value: str, pick: Callable[[Literal], str | None]) -> str:
    """Replace each IP literal by pick(literal) (None keeps it). Only literals, by position:
    never a textual old->new swap, which corrupts permuted addresses."""
    parts = []
    last = 0
    for lit in find_ips(value):
        new = pick(lit)
        if new is None:
            continue
        parts.append(value[last:lit.start])
        parts.append(new)
        last = lit.end
    parts.append(value[last:])
    return "".join(parts)


def loopback(family: int) -> str:
    return "127.0.0.1" if family == 4 else "::1"


def url_host(ip: str) -> str:
    """How an address is written in a URL host."""
    return f"[{ip}]" if ":" in ip else ip
