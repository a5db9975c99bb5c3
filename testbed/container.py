"""One container, seen from the host: exec with captured output, file writes, waiting for it.

The Docker SDK's `exec_run` has no stdin and `put_archive` needs a tar: both are wrapped here so
the bed and the tests write files and run commands one way.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import docker

Files = dict[str, tuple[bytes, int]]  # node path -> (content, mode)


class ContainerError(RuntimeError):
    pass


@dataclass(frozen=True)
class Exec:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_exec(
    client: docker.DockerClient, name: str, argv: Sequence[str], stdin: bytes | None = None
) -> Exec:
    if stdin is not None:
        # exec_run has no stdin: pass it as a file. Not under /tmp: `docker cp`/put_archive does
        # not reach a tmpfs mount (moby#22020).
        path = f"/var/tmp/.kindbed-stdin-{secrets.token_hex(4)}"
        put_files(client, name, {path: (stdin, 0o600)})
        argv = ["sh", "-c", f'"$@" < {path}; rc=$?; rm -f {path}; exit $rc', "sh", *argv]
    res = client.containers.get(name).exec_run(list(argv), demux=True)
    out, err = res.output if res.output else (b"", b"")
    return Exec(
        res.exit_code, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")
    )


def _tar(files: Files) -> bytes:
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs: set[str] = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                    tar.addfile(info)
            data, mode = files[path]
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def put_files(client: docker.DockerClient, name: str, files: Files) -> None:
    if not client.containers.get(name).put_archive("/", _tar(files)):
        raise ContainerError(f"writing {len(files)} files into {name} failed")


def wait_running(
    client: docker.DockerClient, name: str, network: str, timeout_s: float = 20.0
) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c = client.containers.get(name)
        ip = (c.attrs["NetworkSettings"]["Networks"].get(network) or {}).get("IPAddress")
        if c.status == "running" and ip:
            return str(ip)
        if c.status in ("exited", "dead"):
            raise ContainerError(
                f"{name} exited at start: {c.logs(tail=20).decode(errors='replace')}"
            )
        time.sleep(0.2)
    raise ContainerError(f"{name} not running with an IP on {network} after {timeout_s:.0f}s")
