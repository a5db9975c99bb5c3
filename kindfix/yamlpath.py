"""Parses a node file into a `Document` whose scalars a path addresses (patches/addresses.yaml):

    spec.containers[name=etcd].command[flag=--initial-cluster]
    [kind=InitConfiguration].localAPIEndpoint.advertiseAddress      (multi-document file)
    KUBELET_KUBEADM_ARGS[flag=--node-ip]                             (kubeadm-flags.env)

The path language and the `Document` interface are docpath.py; the formats are yamldoc.py (YAML,
edited in place so comments, quoting and layout survive) and flatdoc.py (kubeadm-flags.env,
one-value text files).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from kindfix.docpath import Document, parse_path
from kindfix.flatdoc import EnvFlagDocument, TextDocument
from kindfix.yamldoc import MultiYamlDocument, YamlDocument

# Document, YamlDocument and parse_path are also imported from here (rewrite.py, patches.py,
# recovery/manifest.py, tests); new code imports them from where they live.
__all__ = ["PARSERS", "Document", "YamlDocument", "parse_document", "parse_path"]


PARSERS: dict[str, Callable[[bytes, str], Document]] = {
    "yaml": YamlDocument,
    "yaml-multi": MultiYamlDocument,
    "env-flag": EnvFlagDocument,
    "text": TextDocument,
}


def parse_document(fmt: str, text: bytes, source: str, editable: bool = True) -> Document:
    try:
        parser = PARSERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}") from None
    if not editable and fmt in ("yaml", "yaml-multi"):
        return _parse_read_only(fmt, text, source)
    return parser(text, source)


@functools.lru_cache(maxsize=512)
def _parse_read_only(fmt: str, text: bytes, source: str) -> Document:
    """Read-only documents refuse changes (their refs raise), so one parse serves audit and the
    plan's first look (pure-Python YAML costs ~25 ms per manifest on the test machine)."""
    return PARSERS[fmt](text, source, False)  # type: ignore[call-arg]
