"""One container, seen from the host: exec with captured output, file writes, waiting for it.

Exec goes through kindfix's own exec transport (kindfix/docker_exec.py: stdin, the frames read
from the hijacked socket including what the HTTP layer had already buffered), not the Docker SDK's
`exec_run`: its demultiplexer intermittently reads payload bytes as a frame header ("ValueError:
116 is not a valid stream", docker-py#3160), which failed a bed check after a correct repair.
`put_archive` needs a tar: wrapped here so the bed and the tests write files one way.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import docker

from kindfix.docker_exec import close_stream, exit_code, pump, start_exec

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


EXEC_TIMEOUT_S = 600.0  # a bed command (etcdctl, kubeadm) on a loaded 2-core machine


def run_exec(
    client: docker.DockerClient, name: str, argv: Sequence[str], stdin: bytes | None = None
) -> Exec:
    api = client.api
    exec_id, sock = start_exec(api, name, argv, stdin is not None)
    try:
        out = pump(sock, stdin, time.monotonic() + EXEC_TIMEOUT_S)
    except TimeoutError:
        shown = " ".join(argv)[:120]
        raise ContainerError(f"{name}: {shown} ran over {EXEC_TIMEOUT_S:.0f} s") from None
    finally:
        close_stream(sock)
    code = exit_code(api, exec_id)
    if code is None:
        raise ContainerError(f"{name}: exec {exec_id[:12]} never reported an exit code")
    return Exec(code, bytes(out.stdout).decode(errors="replace"),
                bytes(out.stderr).decode(errors="replace"))


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
