"""Where the stand-ins keep and find things on a node.

Every absolute node path goes through `node_path`, so host tests can run the stand-ins on a temp
directory by setting KINDBED_ROOT (unset inside the node image: the root is "/").
"""

from __future__ import annotations

import os
from pathlib import Path

# The PATH a kind node's processes inherit (Debian default); a container sees its image's bin first.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def root() -> Path:
    return Path(os.environ.get("KINDBED_ROOT") or "/")


def node_path(path: str) -> Path:
    """The host location of an absolute node path (identity inside a node)."""
    return root() / path.lstrip("/")


def state_dir() -> Path:
    """CRI-like runtime state: tmpfs /run, so it vanishes with the node like containerd's."""
    return node_path("/run/kindbed")


def images_dir() -> Path:
    return node_path("/var/lib/kindbed/images")


def image_dir_name(ref: str) -> str:
    """registry.k8s.io/etcd:3.5.1-0 -> registry.k8s.io_etcd_3.5.1-0 (the bed contract)."""
    return ref.replace("/", "_").replace(":", "_")


def image_dir(ref: str) -> Path:
    return images_dir() / image_dir_name(ref)


def image_ref_of_dir(d: Path) -> str:
    """Inverse of image_dir_name: a `ref` file in the dir wins; else the last '_' was the ':'."""
    ref_file = d / "ref"
    if ref_file.is_file():
        return ref_file.read_text().strip()
    head, _, tag = d.name.rpartition("_")
    return f"{head.replace('_', '/')}:{tag}" if head else d.name


def container_env_path(ref: str) -> str:
    return f"{image_dir(ref) / 'bin'}:{NODE_PATH}"


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write then rename, so a concurrent reader (crictl, the kubelet) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, raw)
    finally:
        os.close(fd)
    os.replace(tmp, path)
