"""Reading static pod manifests the way the kubelet's file source does.

Copies (pkg/kubelet/config/file.go): every regular file in the directory whose name does not
start with "." is a pod (so kindfix's ".kindfix.XXXX" temp files are ignored); a file that does
not parse as a Pod is skipped with an error, which removes its pod; a pod's identity is a hash of
its decoded content, so rewriting a file with the same content (or touching it) changes nothing.
Limits: only the fields the stand-ins use are read; no defaulting beyond namespace.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class StaticPod:
    path: str
    config_hash: str
    name: str
    namespace: str
    spec: dict[str, Any]
    annotations: dict[str, str]

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.spec.get("containers") or [])


def parse(path: str, text: str) -> StaticPod:
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or doc.get("kind") != "Pod":
        raise ValueError("not a Pod")
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    if not meta.get("name") or not spec.get("containers"):
        raise ValueError("pod without metadata.name or spec.containers")
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return StaticPod(
        path=path,
        config_hash=hashlib.md5(canonical.encode()).hexdigest(),  # noqa: S324 - an identity, not security
        name=str(meta["name"]),
        namespace=str(meta.get("namespace") or "default"),
        spec=spec,
        annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
    )


def scan(directory: Path) -> tuple[dict[str, StaticPod], dict[str, str]]:
    """Pods by file path, and the errors of files that were skipped."""
    pods: dict[str, StaticPod] = {}
    errors: dict[str, str] = {}
    if not directory.is_dir():
        return pods, errors
    for f in sorted(directory.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        try:
            pods[str(f)] = parse(str(f), f.read_text())
        except (OSError, ValueError, yaml.YAMLError) as e:
            errors[str(f)] = str(e).splitlines()[0] if str(e) else type(e).__name__
    return pods, errors
