"""The container-engine seam: every side effect on Docker (or Podman) goes through `Runtime`.

The real implementation is `kindfix.docker_runtime.DockerRuntime`; tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
KIND_ROLE_LABEL = "io.x-k8s.kind.role"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def text(self) -> str:
        return self.stdout.decode(errors="replace")


@dataclass(frozen=True)
class Endpoint:
    """One container's address on one network."""

    network: str
    ipv4: str | None
    ipv6: str | None
    ipv4_config: str | None = None  # user-pinned IPAMConfig.IPv4Address, if any
    ipv6_config: str | None = None
    aliases: tuple[str, ...] = ()  # DNS aliases on this network (Docker adds name and short id)


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    state: str  # docker's State.Status: running, exited, created, paused, restarting, dead
    labels: Mapping[str, str]
    networks: Mapping[str, Endpoint]
    restart_policy: str = ""
    started_at: float | None = None  # State.StartedAt as a Unix time (None: never, or unknown)

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    id: str
    driver: str
    subnets: Sequence[str]
    ip_ranges: Sequence[str] = field(default_factory=tuple)
    gateways: Sequence[str] = field(default_factory=tuple)
    enable_ipv6: bool = False


class Runtime(Protocol):
    """What kindfix needs from a container engine."""

    name: str  # "docker" or "podman"

    def ping(self) -> None:
        """Raise KindfixError with a hint when the engine does not answer."""

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerInfo]:
        """All containers (running or not) carrying every label; a None value means any."""

    def inspect_container(self, name: str) -> ContainerInfo: ...

    def inspect_network(self, name: str) -> NetworkInfo: ...

    def exec(
        self,
        container: str,
        argv: Sequence[str],
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> ExecResult: ...

    def start(self, container: str) -> None: ...

    def stop(self, container: str, timeout: int = 10) -> None: ...

    def signal(self, container: str, sig: str) -> None:
        """Signal PID 1 through the engine (no binary needed in the container)."""

    def get_file(self, container: str, path: str) -> bytes | None:
        """Read through the engine's archive API (images without a shell); None if absent."""

    def put_file(self, container: str, path: str, content: bytes, mode: int = 0o644) -> None:
        """Write through the engine's archive API (images without a shell)."""

    def network_disconnect(self, network: str, container: str) -> None: ...

    def network_connect(
        self,
        network: str,
        container: str,
        ipv4: str | None = None,
        ipv6: str | None = None,
        aliases: Sequence[str] = (),
    ) -> None: ...
