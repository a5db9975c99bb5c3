"""The `Node` seam: every helper that touches a node is written over this protocol.

Modelled on kind's `nodes.Node` (kubernetes-sigs/kind pkg/cluster/nodes/types.go): a node is
something you can exec in. Files are read in one batched exec and written atomically
(temp file + rename), both through plain `docker exec` so they work where the node IPs are not
reachable from the host (Docker Desktop on macOS).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Protocol

from kindfix.errors import CommandError, KindfixError
from kindfix.nodescripts import script
from kindfix.runtime import ExecResult, Runtime

# The node scripts (kindfix/scripts/, composed by kindfix/nodescripts.py), by the names callers
# and tests know them: the batched read, the atomic write, the two static pod restarts.
_READ_FILES_SCRIPT = script("read-files")
_WRITE_FILE_SCRIPT = script("write-file")
RESTART_PODS = script("restart-pods")
REFRESH_KUBELET = script("refresh-kubelet")
NO_SYSTEMCTL = "@@kindfix no-systemctl"  # what refresh-kubelet.sh prints without systemctl
MANIFESTS_DIR = "/etc/kubernetes/manifests/"


# exit codes of an exec whose program does not exist or cannot run (no shell in the image)
NO_SHELL = (126, 127)


class Node(Protocol):
    """A kind node (or load balancer) that kindfix can exec in."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...

    def exec(
        self, argv: Sequence[str], stdin: bytes | None = None, timeout: float | None = None
    ) -> ExecResult: ...

    def read_files(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        """Content of each path, None where the file does not exist. One exec for all."""

    def read_file(self, path: str) -> bytes | None: ...

    def write_file(self, path: str, content: bytes, mode: int = 0o644) -> None:
        """Atomic write: temp file in the same directory, then rename."""


def run(node: Node, argv: Sequence[str], stdin: bytes | None = None,
        timeout: float | None = None) -> ExecResult:
    """exec that raises CommandError on a non-zero exit."""
    result = node.exec(argv, stdin=stdin, timeout=timeout)
    if not result.ok:
        raise CommandError(shown(argv), result.exit_code, result.stdout, result.stderr,
                           where=node.name)
    return result


def shown(argv: Sequence[str]) -> list[str]:
    """argv as an error shows it: a fixed script (`sh -c SCRIPT NAME ARGS`) by its name, so the
    one-line error keeps the arguments (the file it was writing), not the script's first lines."""
    if len(argv) > 3 and tuple(argv[:2]) == ("sh", "-c") and ("\n" in argv[2] or
                                                             len(argv[2]) > 80):
        return ["sh", "-c", f"<{argv[3]}>", *argv[4:]]
    return list(argv)


def parse_read_files_output(paths: Sequence[str], output: bytes) -> dict[str, bytes | None]:
    """Pure parser for the batched read script's output."""
    found: dict[str, bytes | None] = dict.fromkeys(paths)
    lines = output.split(b"\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith(b"@@kindfix "):
            continue
        _, status, index = line.decode().split(" ")
        path = paths[int(index)]
        if status == "ok":
            found[path] = base64.b64decode(lines[i]) if i < len(lines) else b""
            i += 1
        elif status == "unreadable":
            raise KindfixError(f"{path} exists but cannot be read", hint="check its permissions")
    return found


class ContainerNode:
    """A node backed by a container of the runtime."""

    def __init__(self, runtime: Runtime, name: str, role: str) -> None:
        self._runtime = runtime
        self._name = name
        self._role = role

    @property
    def name(self) -> str:
        return self._name

    @property
    def role(self) -> str:
        return self._role

    def __repr__(self) -> str:
        return f"ContainerNode({self._name!r}, {self._role!r})"

    def exec(
        self, argv: Sequence[str], stdin: bytes | None = None, timeout: float | None = None
    ) -> ExecResult:
        return self._runtime.exec(self._name, argv, stdin=stdin, timeout=timeout)

    def read_files(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        if not paths:
            return {}
        argv = ["sh", "-c", _READ_FILES_SCRIPT, "kindfix-read", *paths]
        result = self.exec(argv)
        if result.exit_code in NO_SHELL:  # e.g. a distroless load balancer image
            return {p: self._runtime.get_file(self._name, p) for p in paths}
        if not result.ok:
            raise CommandError(shown(argv), result.exit_code, result.stdout, result.stderr,
                               self._name)
        return parse_read_files_output(paths, result.stdout)

    def read_file(self, path: str) -> bytes | None:
        return self.read_files([path])[path]

    def write_file(self, path: str, content: bytes, mode: int = 0o644) -> None:
        argv = ["sh", "-c", _WRITE_FILE_SCRIPT, "kindfix-write", path, f"{mode:o}",
                hashlib.sha256(content).hexdigest()]
        result = self.exec(argv, stdin=content)
        if result.exit_code in NO_SHELL:
            self._runtime.put_file(self._name, path, content, mode)
        elif not result.ok:
            raise CommandError(shown(argv), result.exit_code, result.stdout, result.stderr,
                               self._name)
