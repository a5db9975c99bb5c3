"""Go pflag-style command lines (--name=value, --name value, --bool), as in kubeadm manifests."""

from __future__ import annotations


def parse(argv: list[str], bools: frozenset[str] = frozenset()) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            name, eq, val = a[2:].partition("=")
            if not eq:
                if name in bools or i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    val = "true"
                else:
                    i += 1
                    val = argv[i]
            out[name] = val
        i += 1
    return out
