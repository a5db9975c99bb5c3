"""In-memory stand-ins for the engine and the nodes (scriv's tests/faker.py idea): a dict of
files and a table of command handlers, never a mock of a mock."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from kindfix import nodescripts
from kindfix.errors import KindfixError
from kindfix.runtime import ContainerInfo, Endpoint, ExecResult, NetworkInfo

Handler = Callable[["FakeNode", Sequence[str], "bytes | None"], ExecResult]

# Stands for "a shipped node script" in a handler key: ("sh", "-c", SCRIPT, name, *args).
SCRIPT = "<kindfix node script>"


def _key(argv: Sequence[str]) -> tuple[str, ...]:
    """argv as handlers are keyed: a shipped script's text replaced by its name
    (kindfix/nodescripts.py), so a fake follows the script's name whatever its text."""
    argv = tuple(argv)
    if argv[:2] == ("sh", "-c") and len(argv) > 2:
        name = nodescripts.name_of(argv[2])
        if name is not None:
            return ("sh", "-c", SCRIPT, name, *argv[3:])
    return argv


def ok(stdout: str | bytes = b"", stderr: bytes = b"") -> ExecResult:
    return ExecResult(0, stdout.encode() if isinstance(stdout, str) else stdout, stderr)


def fail(code: int = 1, stderr: str = "failed") -> ExecResult:
    return ExecResult(code, b"", stderr.encode())


def script_of(argv: Sequence[str]) -> str | None:
    """The name of the shipped node script an argv runs, else None."""
    key = _key(argv)
    return key[3] if key[2:3] == (SCRIPT,) else None


@dataclass
class FakeNode:
    """A node whose files live in a dict and whose commands are answered by handlers.

    Handlers are matched by argv prefix, longest first; an unmatched command exits 127 like a
    shell that does not know it, and is recorded in `unhandled`. A shipped node script
    (kindfix/scripts/) is matched by its name: `on_script(name, handler)`; `ran(name)` lists its
    calls. `on(("sh", "-c", text), ...)` with a shipped script's text means the same.
    """

    name: str
    role: str = "control-plane"
    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    handlers: dict[tuple[str, ...], Handler] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    unhandled: list[tuple[str, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The batched read and atomic write scripts of ContainerNode, answered from the dict
        # with the output contract kindfix.node documents (tested for real in test_node.py).
        self.handlers.setdefault(("sh", "-c", SCRIPT, "read-files"), _read_script)
        self.handlers.setdefault(("sh", "-c", SCRIPT, "write-file"), _write_script)
        self.handlers.setdefault(("sh", "-c", "true"), lambda *_: ok())  # "has it a shell?"
        # the cluster lock's scripts (kindfix/scripts/lock-*.sh; run for real in test_lock.py)
        for name, handler in (("lock-acquire", _lock_acquire), ("lock-status", _lock_status),
                              ("lock-remove", _lock_remove),
                              ("lock-heartbeat", _lock_heartbeat)):
            self.handlers.setdefault(("sh", "-c", SCRIPT, name), handler)

    def on(self, prefix: Sequence[str], handler: Handler | ExecResult) -> FakeNode:
        if isinstance(handler, ExecResult):
            result = handler
            self.handlers[_key(prefix)] = lambda *_: result
        else:
            self.handlers[_key(prefix)] = handler
        return self

    def on_script(self, name: str, handler: Handler | ExecResult) -> FakeNode:
        """Answer the shipped node script `name` (kindfix/scripts/<name>.sh) with `handler`."""
        nodescripts.script(name)  # a misspelt name fails here, not as a silent 127 later
        return self.on(("sh", "-c", SCRIPT, name), handler)

    def handler(self, name: str) -> Handler:
        """The handler that answers the shipped node script `name` now."""
        return self.handlers[("sh", "-c", SCRIPT, name)]

    def forget_script(self, name: str) -> None:
        """Let the shipped node script `name` go unanswered (exit 127, as without a shell)."""
        self.handlers.pop(("sh", "-c", SCRIPT, name), None)

    def ran(self, name: str) -> list[tuple[str, ...]]:
        """The calls of the shipped node script `name`, in order (argv as sent)."""
        return [c for c in self.calls if script_of(c) == name]

    def exec(self, argv: Sequence[str], stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        argv = tuple(argv)
        self.calls.append(argv)
        key = _key(argv)
        for prefix in sorted(self.handlers, key=len, reverse=True):
            if key[: len(prefix)] == prefix:
                return self.handlers[prefix](self, argv, stdin)
        self.unhandled.append(argv)
        return ExecResult(127, b"", f"{argv[0]}: command not found".encode())

    def read_files(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        return {p: self.files.get(p) for p in paths}

    def read_file(self, path: str) -> bytes | None:
        return self.files.get(path)

    def write_file(self, path: str, content: bytes, mode: int = 0o644) -> None:
        self.files[path] = content
        self.modes[path] = mode


def _read_script(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    out = []
    for i, path in enumerate(argv[4:]):
        if path in node.files:
            out.append(f"@@kindfix ok {i}\n".encode() + base64.b64encode(node.files[path]) + b"\n")
        else:
            out.append(f"@@kindfix missing {i}\n".encode())
    return ok(b"".join(out))


def _write_script(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
    path, mode = argv[4], int(argv[5], 8)
    node.write_file(path, stdin or b"", mode)
    return ok()


def _lock_held(node: FakeNode, lock: str) -> bytes:
    return f"@@kindfix held {int(time.time())} {int(time.time())}\n".encode() + node.files[lock]


def _lock_acquire(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
    lock, token = argv[4], argv[5]
    if lock in node.files:
        return ok(_lock_held(node, lock))
    node.files[lock] = f"{token}\n{int(time.time())}\n".encode() + (stdin or b"") + b"\n"
    return ok("@@kindfix acquired\n")


def _lock_status(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    lock = argv[4]
    return ok(_lock_held(node, lock) if lock in node.files else b"@@kindfix free\n")


def _lock_token(node: FakeNode, lock: str) -> str:
    return node.files.get(lock, b"").decode(errors="replace").split("\n", 1)[0]


def _lock_remove(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    lock, token = argv[4], argv[5]
    if token and _lock_token(node, lock) == token:
        del node.files[lock]
        return ok("@@kindfix removed\n")
    return ok("@@kindfix kept\n")


def _lock_heartbeat(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    lock, token = argv[4], argv[5]
    return ok("@@kindfix alive\n" if _lock_token(node, lock) == token else "@@kindfix lost\n")


def container(name: str, role: str, ipv4: str | None, cluster: str = "kind",
              network: str = "kind", state: str = "running", ipv6: str | None = None
              ) -> ContainerInfo:
    return ContainerInfo(
        id=f"id-{name}", name=name, image="kindest/node:v1.29.2", state=state,
        labels={"io.x-k8s.kind.cluster": cluster, "io.x-k8s.kind.role": role},
        networks={network: Endpoint(network, ipv4, ipv6)}, restart_policy="on-failure")


@dataclass
class FakeRuntime:
    """The engine: containers by name, networks by name, execs routed to FakeNodes."""

    containers: dict[str, ContainerInfo] = field(default_factory=dict)
    networks: dict[str, NetworkInfo] = field(default_factory=dict)
    nodes: dict[str, FakeNode] = field(default_factory=dict)
    up: bool = True
    name: str = "docker"
    log: list[str] = field(default_factory=list)

    def add(self, info: ContainerInfo, node: FakeNode | None = None) -> FakeRuntime:
        self.containers[info.name] = info
        if node is not None:
            self.nodes[info.name] = node
        return self

    def ping(self) -> None:
        if not self.up:
            raise KindfixError("Cannot reach the Docker engine", hint="is Docker running?")

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerInfo]:
        return [c for c in self.containers.values()
                if all(k in c.labels and (v is None or c.labels[k] == v)
                       for k, v in labels.items())]

    def inspect_container(self, name: str) -> ContainerInfo:
        try:
            return self.containers[name]
        except KeyError:
            raise KindfixError(f"no container named {name}") from None

    def inspect_network(self, name: str) -> NetworkInfo:
        try:
            return self.networks[name]
        except KeyError:
            raise KindfixError(f"no network named {name}") from None

    def exec(self, container: str, argv: Sequence[str], stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        return self.nodes[container].exec(argv, stdin, timeout)

    def start(self, container: str) -> None:
        self.log.append(f"start {container}")
        self.containers[container] = replace(self.containers[container], state="running")

    def stop(self, container: str, timeout: int = 10) -> None:
        self.log.append(f"stop {container}")
        self.containers[container] = replace(self.containers[container], state="exited")

    def signal(self, container: str, sig: str) -> None:
        self.log.append(f"signal {container} {sig}")

    def get_file(self, container: str, path: str) -> bytes | None:
        return self.nodes[container].files.get(path)

    def put_file(self, container: str, path: str, content: bytes, mode: int = 0o644) -> None:
        self.log.append(f"put {container} {path}")
        self.nodes[container].write_file(path, content, mode)

    def network_disconnect(self, network: str, container: str) -> None:
        self.log.append(f"disconnect {network} {container}")
        info = self.containers[container]
        nets = {k: v for k, v in info.networks.items() if k != network}
        self.containers[container] = replace(info, networks=nets)

    def network_connect(self, network: str, container: str, ipv4: str | None = None,
                        ipv6: str | None = None, aliases: Sequence[str] = ()) -> None:
        self.log.append(f"connect {network} {container} {ipv4 or ''}".rstrip())
        info = self.containers[container]
        nets = dict(info.networks)
        nets[network] = Endpoint(network, ipv4 or "172.18.0.250", ipv6, ipv4, ipv6)
        self.containers[container] = replace(info, networks=nets)
