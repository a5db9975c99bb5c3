"""CRI-like runtime state shared by the kubelet, the shim, crictl and ctr (what containerd keeps).

Layout under /run/kindbed (tmpfs, like containerd's state):
  pods/<sandbox-id>.json              written by the kubelet (PodSandbox)
  containers/<id>/config.json         written by the kubelet (Container: ids, metadata, image...)
  containers/<id>/status.json         written by the shim (state, pid, times, exit code)
IDs are 64 lowercase hex characters; times are Unix nanoseconds, as the CRI carries them.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import atomic_write, state_dir

RUNNING = "CONTAINER_RUNNING"
EXITED = "CONTAINER_EXITED"
CREATED = "CONTAINER_CREATED"
UNKNOWN = "CONTAINER_UNKNOWN"


def new_id() -> str:
    return secrets.token_hex(32)


def now_ns() -> int:
    return time.time_ns()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pods_dir() -> Path:
    return state_dir() / "pods"


def containers_dir() -> Path:
    return state_dir() / "containers"


@dataclass
class Container:
    """One container as crictl sees it: the kubelet's config merged with the shim's status."""

    config: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.config["id"])

    @property
    def name(self) -> str:
        return str(self.config["metadata"]["name"])

    @property
    def attempt(self) -> int:
        return int(self.config["metadata"].get("attempt", 0))

    @property
    def pod_id(self) -> str:
        return str(self.config["podSandboxId"])

    @property
    def state(self) -> str:
        st = str(self.status.get("state", CREATED))
        if st == RUNNING and not pid_alive(self.pid, self.status.get("pidStart")):
            # The shim died with its child (e.g. SIGKILLed): containerd reports such a task exited.
            return EXITED
        return st

    @property
    def pid(self) -> int:
        return int(self.status.get("pid", 0) or 0)

    @property
    def dir(self) -> Path:
        return containers_dir() / self.id


def write_pod(pod: dict[str, Any]) -> None:
    atomic_write(pods_dir() / f"{pod['id']}.json", json.dumps(pod, indent=1))


def load_pods() -> list[dict[str, Any]]:
    if not pods_dir().is_dir():
        return []
    pods = [_read_json(p) for p in sorted(pods_dir().glob("*.json"))]
    return [p for p in pods if p]


def remove_pod(pod_id: str) -> None:
    (pods_dir() / f"{pod_id}.json").unlink(missing_ok=True)


def write_config(config: dict[str, Any]) -> None:
    atomic_write(containers_dir() / config["id"] / "config.json", json.dumps(config, indent=1))


def write_status(cid: str, status: dict[str, Any]) -> None:
    atomic_write(containers_dir() / cid / "status.json", json.dumps(status, indent=1))


def load_container(cid: str) -> Container | None:
    d = containers_dir() / cid
    config = _read_json(d / "config.json")
    if config is None:
        return None
    return Container(config, _read_json(d / "status.json") or {})


def load_containers() -> list[Container]:
    if not containers_dir().is_dir():
        return []
    found = (load_container(d.name) for d in sorted(containers_dir().iterdir()) if d.is_dir())
    return sorted((c for c in found if c), key=lambda c: int(c.config.get("createdAt", 0)))


def remove_container(cid: str) -> None:
    shutil.rmtree(containers_dir() / cid, ignore_errors=True)


class NotFoundError(LookupError):
    pass


class AmbiguousError(LookupError):
    pass


def resolve(prefix: str, ids: list[str]) -> str:
    """containerd's truncindex: a unique prefix names an id; no match or two matches fail."""
    if not prefix:
        raise NotFoundError(prefix)
    matches = [i for i in ids if i.startswith(prefix)]
    if not matches:
        raise NotFoundError(prefix)
    if len(matches) > 1:
        raise AmbiguousError(prefix)
    return matches[0]


def proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: guards against a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def pid_alive(pid: int, start: Any = None) -> bool:
    if pid <= 0:
        return False
    current = proc_start_time(pid)
    if current is None:
        return False
    return start is None or str(start) == current


def signal_container(c: Container, sig: int) -> bool:
    """Signal the container's process group; False when it is not running."""
    if not pid_alive(c.pid, c.status.get("pidStart")):
        return False
    try:
        os.killpg(c.pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(c.pid, sig)
    return True


def image_id(ref: str) -> str:
    """A stable stand-in for the image's content digest (sha256:<64 hex>)."""
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
