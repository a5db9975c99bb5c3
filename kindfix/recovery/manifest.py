"""etcd's static pod manifest as the recovery reads and edits it: where it lives and where it is
parked while etcd is stopped, the etcd container's flags and image, and the peer URL a member
advertises. Pure functions over the file's bytes; an odd file is one line naming it.
"""

from __future__ import annotations

import re
from typing import Any

from kindfix.addresses import node_ips, url_host
from kindfix.discovery import ClusterNode
from kindfix.errors import KindfixError
from kindfix.yamlpath import YamlDocument, parse_document

MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
PARKED_DIR = "/kind/kindfix/parked"
PARKED = f"{PARKED_DIR}/etcd.yaml"
DATA_DIR = "/var/lib/etcd"


def peer_url(node: ClusterNode, family: int | None = None) -> str:
    """The member's peer URL at the node's current address of `family` (4 or 6; default: the
    IPv4 address when the node has one)."""
    ip = (node.ipv6 if family == 6 else node.ipv4) or node.ipv4 or node.ipv6 or ""
    return f"https://{url_host(ip)}:2380"


def advertised_family(manifest: bytes | None) -> int | None:
    """The address family etcd.yaml advertises its peer URL in (dual-stack nodes have both)."""
    if manifest is None:
        return None
    try:
        command = etcd_container(manifest)["command"]
    except (KindfixError, KeyError, TypeError, StopIteration):
        return None
    urls = [str(a).split("=", 1)[1] for a in command
            if str(a).startswith("--initial-advertise-peer-urls=")]
    lits = [lit for url in urls for lit in node_ips(url)]
    return lits[0].family if lits else None


def set_flags(manifest: bytes, flags: dict[str, str | None], source: str) -> bytes:
    """Set (or with None remove) `--flag=value` items of the etcd container's command."""
    doc = YamlDocument(manifest, source)
    command = find_etcd(doc.data, source).get("command")
    if not isinstance(command, list):
        raise odd_manifest(source, "the etcd container has no command list")
    for flag, value in flags.items():
        idx = [i for i, item in enumerate(command) if str(item).startswith(flag + "=")
               or str(item) == flag]
        for i in reversed(idx):
            del command[i]
        if value is not None:
            command.append(f"{flag}={value}" if value else flag)
    return doc.dump_structure()


def etcd_container(manifest: bytes, source: str = MANIFEST) -> Any:
    """The etcd container of etcd.yaml, read-only (the parse is cached by content)."""
    doc = parse_document("yaml", manifest, source, editable=False)
    return find_etcd(doc.data, source)  # type: ignore[attr-defined]


def find_etcd(data: Any, source: str) -> Any:
    """spec.containers[name=etcd] of a parsed etcd.yaml, or one line naming the file."""
    spec = data.get("spec") if isinstance(data, dict) else None
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list):
        raise odd_manifest(source, "no spec.containers list")
    found = [c for c in containers if isinstance(c, dict) and c.get("name") == "etcd"]
    if not found:
        raise odd_manifest(source, "no container named etcd in spec.containers")
    return found[0]


def odd_manifest(source: str, why: str) -> KindfixError:
    return KindfixError(f"{source}: {why}; this is not the static pod manifest kubeadm writes",
                        hint="restore the file (`kindfix rollback`, or the copy under "
                             f"{PARKED_DIR}) and run `kindfix repair` again")


def etcd_image(manifest: bytes, source: str = MANIFEST) -> str:
    image = etcd_container(manifest, source).get("image")
    if not isinstance(image, str) or not image:
        raise odd_manifest(source, "the etcd container names no image")
    return image


_TAG_VERSION = re.compile(r":v?(\d+)\.(\d+)[^/]*$")


def status_tools(image: str) -> str:
    """The etcd image's tools that read a member's backend offline, the likely one first
    (DOMAIN.md): etcd 3.4 and 3.5 images have no etcdutl (each try costs a `ctr run`), 3.6
    moved `snapshot status|restore` from etcdctl to etcdutl. An untagged image: etcdutl first."""
    m = _TAG_VERSION.search(image.split("@", 1)[0])
    if m is not None and (int(m.group(1)), int(m.group(2))) < (3, 6):
        return "etcdctl etcdutl"
    return "etcdutl etcdctl"
