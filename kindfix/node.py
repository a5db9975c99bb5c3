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
from kindfix.runtime import ExecResult, Runtime

# Reads every path given as an argument; for each prints a header line
# "@@kindfix <ok|missing|unreadable> <index>" followed, when ok, by one line of base64.
# A fixed script: paths travel as argv, never interpolated into shell text.
_READ_FILES_SCRIPT = r"""
i=0
for p in "$@"; do
  if [ -f "$p" ] && [ -r "$p" ]; then
    printf '@@kindfix ok %d\n' "$i"; base64 -w0 < "$p"; printf '\n'
  elif [ -e "$p" ]; then
    printf '@@kindfix unreadable %d\n' "$i"
  else
    printf '@@kindfix missing %d\n' "$i"
  fi
  i=$((i+1))
done
"""

# Writes stdin to a temp file next to the target, sets the mode, then renames over it.
# Renames only a complete copy: a client killed mid-stream ends stdin early, and a partial file
# must never replace the original. "$1" is the temp file, "$2" the sha256 it must have.
COMPLETE_OR_ABORT = r"""
complete() {
  [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$2" ] && return 0
  rm -f "$1"; echo "kindfix: incomplete write refused" >&2; exit 5
}
"""

# A script that makes a temp file sets $t: whatever stops it (a failed command under set -e, a
# signal) removes the temp file on the way out; a renamed one is forgotten (t=) first.
TEMP_CLEANUP = r"""
t=
trap 'rm -f "$t"' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
"""

# Makes what was renamed survive a crash of the node (the file's data before the rename, the
# directory entry after it). `sync FILE` is an fsync (coreutils >= 8.24, every kind node); an
# older sync ignores the arguments and flushes everything, still correct.
DURABLE = r"""
durable() { sync "$@" 2>/dev/null || true; }
"""

# Restarts each named static pod whose manifest did not change (it reads a changed kubeconfig or
# certificate only at start): stops its running container, then removes the exited ones. The
# removal matters: a real kubelet counts a `crictl stop` as a failure of the container and
# restarts it only after its CrashLoopBackOff (>= 10 s, doubling; realkind finding 2b), and it
# takes the back-off from the newest exited container (kuberuntime doBackOff): with none left,
# its next sync starts the container at once. A kubelet restart would not do it: a new kubelet
# adopts running containers whose pod is unchanged. Absent pods are skipped.
RESTART_PODS = r"""
for pod; do
  ids=$(crictl ps -q --name "^$pod\$" 2>/dev/null)
  [ -z "$ids" ] || crictl stop $ids >/dev/null || exit
  old=$(crictl ps -a -q --state exited --name "^$pod\$" 2>/dev/null)
  [ -z "$old" ] || crictl rm $old >/dev/null 2>&1 || true
done
"""

# Makes the kubelet act on static pod manifests kindfix changed (args: the pods whose manifest
# changed). A kubelet that started while no API server answered (every control plane after a
# Docker restart) never terminates a static pod whose manifest changed or went: deletePod skips
# "because sources aren't ready yet" and housekeeping waits for sourcesReady, which needs the
# API server, which needs etcd (kubernetes#116880, #109596; realkind finding 1); the new pod
# waits for the old one for ever, and the old one's containers keep being restarted under
# back-off (finding 2). A new kubelet knows only the manifests on disk and has no back-off, but
# it leaves an unknown pod's containers running (the same missing sources): so stop the kubelet,
# stop and remove the old pods' containers, start it. Prints "@@kindfix no-systemctl" (exit 0)
# where there is no systemctl: the caller says what that means.
REFRESH_KUBELET = r"""
command -v systemctl >/dev/null 2>&1 || { echo "@@kindfix no-systemctl"; exit 0; }
systemctl stop kubelet || exit
trap 'systemctl start kubelet' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
for pod; do
  ids=$(crictl ps -q --name "^$pod\$" 2>/dev/null)
  [ -z "$ids" ] || crictl stop --timeout 10 $ids >/dev/null 2>&1 || true
  old=$(crictl ps -a -q --state exited --name "^$pod\$" 2>/dev/null)
  [ -z "$old" ] || crictl rm $old >/dev/null 2>&1 || true
done
trap - EXIT
systemctl start kubelet
"""
NO_SYSTEMCTL = "@@kindfix no-systemctl"
MANIFESTS_DIR = "/etc/kubernetes/manifests/"

_WRITE_FILE_SCRIPT = COMPLETE_OR_ABORT + TEMP_CLEANUP + DURABLE + r"""
set -e
p="$1"; mode="$2"
d=$(dirname "$p")
mkdir -p "$d"
t=$(mktemp "$d/.kindfix.XXXXXX")
cat > "$t"
complete "$t" "$3"
chmod "$mode" "$t"
durable "$t"
mv -f "$t" "$p"; t=
durable "$d"
"""


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
