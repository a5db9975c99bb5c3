"""`Runtime` over the Docker SDK's low-level API (also Podman's Docker-compatible socket).

Thread-safe: the SDK client is created once under a lock and its connection pool is sized for
an audit that execs into every node at once; each exec owns its own hijacked socket.

The exec stream itself is docker_exec.py; reading `inspect` JSON is docker_inspect.py.
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import docker.tls
import requests.exceptions

from kindfix.docker_exec import close_stream, exit_code, pump, start_exec
from kindfix.docker_inspect import container_info, network_info
from kindfix.dockerhost import PODMAN_ROOT_SOCKET, EngineEndpoint, resolve_endpoint
from kindfix.errors import KindfixError
from kindfix.runtime import ContainerInfo, ExecResult, NetworkInfo

# An exec without an explicit timeout is still bounded (a hung node must not hang kindfix).
DEFAULT_EXEC_TIMEOUT = 300.0
# Audit execs into every node concurrently; the SDK's default pool of 10 would churn sockets.
_POOL_SIZE = 64
# The SDK's connection errors are long nested reprs; show the part a user can act on.
_REASONS = (
    ("No such file or directory", "no socket there"),
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("Name or service not known", "unknown host"),
)
# After the output stream ends the engine may report the exec as running for a moment.


class DockerRuntime:
    """The real `Runtime`. `client` is a docker.APIClient (tests pass a fake)."""

    def __init__(self, endpoint: EngineEndpoint | None = None, client: Any | None = None) -> None:
        self._endpoint = endpoint
        self._client = client
        self._lock = threading.Lock()
        provider = endpoint.provider if endpoint is not None else None
        if provider is None and client is None:
            provider = self.endpoint.provider
        self.name: str = provider or "docker"

    @property
    def endpoint(self) -> EngineEndpoint:
        if self._endpoint is None:
            self._endpoint = resolve_endpoint(os.environ)
        return self._endpoint

    def _where(self) -> str:
        if self._endpoint is None:
            return "the configured engine"
        return f"{self._endpoint.base_url} ({self._endpoint.source})"

    def _rootful_podman(self) -> bool:
        return self._endpoint is not None and self._endpoint.base_url == PODMAN_ROOT_SOCKET

    def _unreachable(self, err: Exception) -> KindfixError:
        what = "Podman" if self.name == "podman" else "Docker"
        detail = str(err)
        if "Permission denied" in detail:
            # rootful podman's socket is root's alone (0600, no group to join)
            hint = (
                "run kindfix with sudo, as the cluster's rootful podman runs"
                if self.name == "podman"
                else "add your user to the docker group (`sudo usermod -aG docker $USER`, then "
                "log in again), or run kindfix with sudo"
            )
            return KindfixError(f"Permission denied on the {what} engine at {self._where()}",
                                hint=hint)
        reason = next((short for marker, short in _REASONS if marker in detail), detail[:160])
        if self.name != "podman":
            hint = "start Docker Desktop / `sudo systemctl start docker`, or set DOCKER_HOST"
        elif self._rootful_podman():  # kindfix runs as root: kind's podman provider did too
            hint = ("start the API socket: `sudo systemctl start podman.socket` (without systemd: "
                    "`sudo podman system service --time=0 &`), or set DOCKER_HOST")
        else:
            hint = "start it with `systemctl --user start podman.socket`, or set DOCKER_HOST"
        return KindfixError(
            f"Cannot reach the {what} engine at {self._where()}; is {what} running? ({reason})",
            hint=hint,
        )

    def _api(self) -> Any:
        with self._lock:
            if self._client is None:
                ep = self.endpoint
                try:
                    self._client = docker.APIClient(
                        base_url=ep.base_url,
                        version="auto",  # the SDK default (1.45) is too new for dockerd 20.10
                        tls=_tls_config(ep),
                        max_pool_size=_POOL_SIZE,
                    )
                except docker.errors.DockerException as err:
                    raise self._unreachable(err) from err
            return self._client

    @contextmanager
    def _errors(self, action: str, kind: str, name: str) -> Iterator[None]:
        """Turns SDK failures into one KindfixError line with a hint."""
        try:
            yield
        except docker.errors.NotFound as err:
            lister = "ps -a" if kind == "container" else "network ls"
            raise KindfixError(
                f"no {kind} named {name}", hint=f"list them with `{self.name} {lister}`"
            ) from err
        except docker.errors.APIError as err:
            detail = str(err.explanation or err)
            if "is not running" in detail:
                raise KindfixError(
                    f"container {name} is not running", hint=f"start it: {self.name} start {name}"
                ) from err
            raise KindfixError(
                f"{self.name} {action} {name} failed: {detail}",
                hint=f"see `{self.name} inspect {name}` and the engine's log",
            ) from err
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as err:
            raise self._unreachable(err) from err

    def close(self) -> None:
        """Closes the SDK client's pooled connections (not part of `Runtime`)."""
        with self._lock:
            if self._client is not None and hasattr(self._client, "close"):
                self._client.close()
            self._client = None

    # -- Runtime ---------------------------------------------------------------------------

    def ping(self) -> None:
        api = self._api()
        try:
            api.ping()
        except (requests.exceptions.RequestException, docker.errors.DockerException) as err:
            raise self._unreachable(err) from err

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerInfo]:
        selectors_ = [k if v is None else f"{k}={v}" for k, v in labels.items()]
        with self._errors("list containers", "label", ",".join(selectors_)):
            summaries = self._api().containers(all=True, filters={"label": selectors_})
        found = []
        for summary in summaries:
            with self._errors("inspect", "container", summary["Id"]):
                try:
                    data = self._api().inspect_container(summary["Id"])
                except docker.errors.NotFound:
                    continue  # removed between list and inspect
            found.append(container_info(data))
        return sorted(found, key=lambda c: c.name)

    def inspect_container(self, name: str) -> ContainerInfo:
        with self._errors("inspect", "container", name):
            data = self._api().inspect_container(name)
        return container_info(data)

    def inspect_network(self, name: str) -> NetworkInfo:
        with self._errors("network inspect", "network", name):
            data = self._api().inspect_network(name)
        return network_info(data)

    def exec(
        self,
        container: str,
        argv: Sequence[str],
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        if stdin is not None and self._endpoint is not None and self._endpoint.tls:
            # Python's ssl cannot half-close (send close_notify and keep reading), and without
            # EOF on stdin a command such as `cat > file` would wait until the timeout.
            raise KindfixError(
                f"cannot send stdin to {self.name} exec over a TLS connection "
                f"({self._endpoint.base_url})",
                hint="use a unix socket or ssh:// endpoint (e.g. a docker context over SSH)",
            )
        api = self._api()
        limit = DEFAULT_EXEC_TIMEOUT if timeout is None else timeout
        with self._errors("exec", "container", container):
            exec_id, sock = start_exec(api, container, argv, stdin is not None)
        try:
            demux = pump(sock, stdin, time.monotonic() + limit)
        except TimeoutError as err:
            shown = f"{self.name} exec {shlex.quote(container)} {shlex.join(argv)}"
            raise KindfixError(
                f"command timed out after {limit:g}s: {shown[:200]}",
                hint="the node may be overloaded or the command hung; it may still be running",
            ) from err
        finally:
            close_stream(sock)
        with self._errors("exec inspect", "container", container):
            code = exit_code(api, exec_id)
        if code is None:
            raise KindfixError(
                f"exec {exec_id[:12]} closed its output but never reported an exit code",
                hint="retry; if it persists, check the engine's log",
            )
        return ExecResult(code, bytes(demux.stdout), bytes(demux.stderr))

    def start(self, container: str) -> None:
        with self._errors("start", "container", container):
            self._api().start(container)

    def stop(self, container: str, timeout: int = 10) -> None:
        with self._errors("stop", "container", container):
            self._api().stop(container, timeout=timeout)

    def signal(self, container: str, sig: str) -> None:
        """Signal the container's PID 1 through the engine (`docker kill -s`): needs no
        `kill` binary in the image (kind's load balancer images have no shell)."""
        with self._errors(f"signal {sig}", "container", container):
            self._api().kill(container, signal=sig)

    def get_file(self, container: str, path: str) -> bytes | None:
        """A file through the engine's archive API (`docker cp`): works without any binary in
        the container, and on stopped containers too. None when it does not exist."""
        api = self._api()
        try:
            stream, _ = api.get_archive(container, path)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as e:
            raise KindfixError(f"cannot read {container}:{path}: {e.explanation or e}") from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            extracted = tar.extractfile(member) if member else None
            return extracted.read() if extracted else None

    def put_file(self, container: str, path: str, content: bytes, mode: int = 0o644) -> None:
        """Write a file through the engine's archive API (`docker cp`)."""
        directory, _, name = path.rpartition("/")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, int(time.time())
            tar.addfile(info, io.BytesIO(content))
        with self._errors(f"write {path}", "container", container):
            self._api().put_archive(container, directory or "/", buf.getvalue())

    def network_disconnect(self, network: str, container: str) -> None:
        with self._errors(f"network disconnect {network}", "container", container):
            self._api().disconnect_container_from_network(container, network)

    def network_connect(
        self,
        network: str,
        container: str,
        ipv4: str | None = None,
        ipv6: str | None = None,
        aliases: Sequence[str] = (),
    ) -> None:
        with self._errors(f"network connect {network}", "container", container):
            self._api().connect_container_to_network(
                container,
                network,
                ipv4_address=ipv4,
                ipv6_address=ipv6,
                aliases=list(aliases) or None,
            )


def _tls_config(ep: EngineEndpoint) -> docker.tls.TLSConfig | bool:
    if not ep.tls:
        return False
    cert = (ep.client_cert, ep.client_key) if ep.client_cert and ep.client_key else None
    verify: bool | str = (ep.ca_cert or True) if ep.tls_verify else False
    return docker.tls.TLSConfig(client_cert=cert, ca_cert=ep.ca_cert, verify=verify)
