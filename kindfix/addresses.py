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

# What looks like an attempt at an address, valid or not: a run of digits and dots holding a dot
# (URL parsers take an all-numeric host for IPv4, so `172.18.0` is no hostname), whatever is in
# URL brackets, and a word with two colons (hostnames have none; `host:port` has one).
_V4_LIKE = re.compile(r"(?<![\w.\-])\d[\d.]*\.[\d.]*(?![\w.\-])")
_V6_LIKE = re.compile(r"\[(?P<br>[^\]]*)\]|(?<![\w:.])(?P<bare>[\w.]*:[\w.]*:[\w:.]*)(?![\w:.])")


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


def malformed(value: str) -> list[str]:
    """Address-shaped parts of `value` that are no valid address (`172.18.0`, `172.18.0.405`,
    `172.018.0.3`, `[fc00::zz]`): the regexes of find_ips skip them, so without this check a
    value holding one would be judged by its other parts, or as a hostname."""
    bad = [m.group(0) for m in _V4_LIKE.finditer(value) if not _valid(m.group(0), 4)]
    for m in _V6_LIKE.finditer(value):
        text = m.group("br") if m.group("br") is not None else m.group("bare")
        if not _valid(text, 6):
            bad.append(m.group(0))
    return bad


def _valid(text: str, family: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == family
    except ValueError:
        return False


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
