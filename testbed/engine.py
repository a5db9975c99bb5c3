"""The Docker engine the bed runs on: reuse a running one, else install and start dockerd.

TESTBED.md: no engine runs when a machine starts; Debian's docker.io provides one, and
`dockerd` in the background answers on /var/run/docker.sock within a few seconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import docker

SOCKET = Path("/var/run/docker.sock")
DOCKERD_LOG = Path("/var/log/dockerd.log")
START_TIMEOUT_S = 60.0
APT_TIMEOUT_S = 900


class EngineError(RuntimeError):
    """The engine could not be reached, installed or started."""


def accepts_connections(path: Path) -> bool:
    """Whether something listens on the unix socket `path` (a plain connect, always closed).

    While dockerd or `podman system service` starts, the socket file can exist with nobody
    listening yet. The SDK's unix transport does not close its socket when connect fails
    (docker-py#3356), so asking it then leaks a socket, which pytest reports as an error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def ping_socket(path: Path, **client_args: Any) -> docker.DockerClient | None:
    """A client for the Docker-compatible API on `path` when it answers now, else None
    (dockerd's here; Podman's in testbed/podman.py)."""
    if not path.exists() or not accepts_connections(path):
        return None
    client = None
    try:
        client = docker.DockerClient(base_url=f"unix://{path}", timeout=120, **client_args)
        client.ping()
    except Exception:
        if client is not None:
            client.close()
        return None
    return client


def ping() -> docker.DockerClient | None:
    """A client when the engine answers now, else None."""
    return ping_socket(SOCKET)


# What the bed needs on the host, by the command that tells it is there: the engine, and
# debootstrap for the images (a fresh Debian 12 machine has neither).
HOST_PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap"}


def missing_host_packages() -> list[str]:
    return [pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None]


def apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        subprocess.run(argv, check=True, env=env, timeout=APT_TIMEOUT_S)


def _dockerd_running() -> bool:
    return (
        subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, check=False).returncode == 0
    )


def start_daemon(argv: list[str], log_path: Path) -> None:
    """Start a daemon (dockerd, `podman system service`) that outlives this process on purpose,
    logging to `log_path`. `setsid -f` (util-linux, on every Debian) forks it into its own
    session and returns at once, so this process holds no handle to a child that is still
    running when it exits (Popen warns about that at interpreter exit). It runs in "/", not in
    the caller's directory: a checkout removed while the daemon runs left `podman system
    service` in a deleted directory, and every container it started after that failed ("write
    child: broken pipe"; conmon: "Failed to get working directory")."""
    with log_path.open("ab") as log:
        subprocess.run(["setsid", "-f", *argv], stdout=log, stderr=log,
                       stdin=subprocess.DEVNULL, timeout=30, check=True, cwd="/")


def start_dockerd() -> None:
    """Start dockerd detached, logging to DOCKERD_LOG."""
    start_daemon(["dockerd"], DOCKERD_LOG)


def wait_for_engine(timeout_s: float = START_TIMEOUT_S) -> docker.DockerClient:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        client = ping()
        if client is not None:
            return client
        time.sleep(0.5)
    raise EngineError(
        f"Docker engine did not answer on {SOCKET} within {timeout_s:.0f}s; see {DOCKERD_LOG}"
    )


def ensure_engine(timeout_s: float = START_TIMEOUT_S) -> docker.DockerClient:
    """Return a client for a running engine, installing/starting dockerd when needed, and
    installing what else the bed needs on the host (debootstrap) when it is missing."""
    client = ping()
    # docker.io only when no engine answers (one may run without dockerd on PATH)
    missing = [pkg for pkg in missing_host_packages() if client is None or pkg != "docker.io"]
    if missing:
        apt_install(missing)
    if client is not None:
        return client
    if not _dockerd_running():
        start_dockerd()
    return wait_for_engine(timeout_s)


def dockerd_pid() -> int | None:
    out = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False)
    pids = [int(p) for p in out.stdout.split()]
    return pids[0] if pids else None


def restart_engine(timeout_s: float = START_TIMEOUT_S) -> docker.DockerClient:
    """Stop dockerd (SIGTERM, as a service stop does) and start it again.

    Affects every container on the machine: callers opt in (pytest marker `engine_restart`).
    """
    pid = dockerd_pid()
    if pid is not None:
        os.kill(pid, 15)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and dockerd_pid() == pid:
            time.sleep(0.5)
        if dockerd_pid() == pid:
            raise EngineError(f"dockerd (pid {pid}) did not stop within {timeout_s:.0f}s")
    start_dockerd()
    return wait_for_engine(timeout_s)
