"""Which engine to talk to: resolves the endpoint the way the docker CLI does.

Copies the behaviour (not the code) of docker/cli `cli/command/cli.go` resolveContextName and
`cli/context/store`: DOCKER_HOST wins and means the "default" context; else DOCKER_CONTEXT; else
`currentContext` of `$DOCKER_CONFIG/config.json` (default ~/.docker). A named context lives in
`contexts/meta/<sha256 hex of its name>/meta.json` (`Endpoints.docker.Host`, `SkipTLSVerify`) with
TLS material in `contexts/tls/<same hash>/docker/{ca,cert,key}.pem`. Docker Desktop, colima,
OrbStack and Rancher Desktop all register such a context. Podman (kind's
KIND_EXPERIMENTAL_PROVIDER=podman) is reached through its Docker-compatible socket.

Limits: no `-H`/`--context` flags (kindfix has none), no Windows named pipes, no
`DOCKER_TLS` without verification, no Kubernetes endpoints of old contexts.

A pure function of (environ, home, euid): callers pass `os.environ`; tests pass temp dirs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kindfix.errors import KindfixError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DEFAULT_CONTEXT = "default"
PODMAN_ROOT_SOCKET = "unix:///run/podman/podman.sock"

_HINT = "run `docker context ls` and `docker context use default`, or set DOCKER_HOST"


@dataclass(frozen=True)
class EngineEndpoint:
    """Where the engine is and how to authenticate to it."""

    base_url: str
    source: str  # "DOCKER_HOST", "context colima (currentContext in ...)", "default socket"
    provider: str = "docker"  # "docker" or "podman"
    context: str | None = None
    tls: bool = False
    tls_verify: bool = False
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


def context_dir_name(name: str) -> str:
    """The store directory of a context: the sha256 hex digest of its name (docker/cli store)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def resolve_endpoint(
    environ: Mapping[str, str], home: str | Path | None = None, euid: int | None = None
) -> EngineEndpoint:
    """The endpoint the docker CLI would use (or the Podman socket for kind's podman provider).

    `home` defaults to environ["HOME"] (then the process's home); `euid` to the process's.
    Raises KindfixError with a hint when the configuration names a context that cannot be read.
    """
    home_dir = Path(home) if home is not None else Path(environ.get("HOME") or Path.home())
    provider = "podman" if environ.get("KIND_EXPERIMENTAL_PROVIDER") == "podman" else "docker"

    host = environ.get("DOCKER_HOST", "")
    if host:
        return _from_docker_host(host, environ, home_dir, provider)
    if provider == "podman":
        return _podman_socket(environ, os.geteuid() if euid is None else euid)

    config_dir = Path(environ.get("DOCKER_CONFIG") or home_dir / ".docker")
    name, origin = _context_name(environ, config_dir)
    if name == DEFAULT_CONTEXT:
        source = "default socket" + (f" ({origin})" if origin else "")
        return EngineEndpoint(DEFAULT_SOCKET, source=source, context=DEFAULT_CONTEXT)
    return _from_context(name, origin, config_dir)


def _from_docker_host(
    host: str, environ: Mapping[str, str], home_dir: Path, provider: str
) -> EngineEndpoint:
    # The CLI turns TLS on with --tlsverify, whose default is DOCKER_TLS_VERIFY != "".
    verify = environ.get("DOCKER_TLS_VERIFY", "") != ""
    if not verify:
        return EngineEndpoint(host, source="DOCKER_HOST", provider=provider)
    cert_dir = Path(environ.get("DOCKER_CERT_PATH") or home_dir / ".docker")
    ca, cert, key = _tls_files(cert_dir)
    return EngineEndpoint(
        host,
        source="DOCKER_HOST (DOCKER_TLS_VERIFY)",
        provider=provider,
        tls=True,
        tls_verify=True,
        ca_cert=ca,
        client_cert=cert,
        client_key=key,
    )


def _podman_socket(environ: Mapping[str, str], euid: int) -> EngineEndpoint:
    if euid == 0:
        return EngineEndpoint(PODMAN_ROOT_SOCKET, source="podman (root)", provider="podman")
    runtime_dir = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{euid}"
    return EngineEndpoint(
        f"unix://{runtime_dir}/podman/podman.sock",
        source="podman (rootless, XDG_RUNTIME_DIR)",
        provider="podman",
    )


def _context_name(environ: Mapping[str, str], config_dir: Path) -> tuple[str, str]:
    """The context's name and what chose it ("" when nothing did)."""
    name = environ.get("DOCKER_CONTEXT", "")
    if name:
        return name, "DOCKER_CONTEXT"
    config_file = config_dir / "config.json"
    config = _read_json(config_file, what="docker CLI config")
    if config is None:
        return DEFAULT_CONTEXT, ""
    current = config.get("currentContext") or ""
    if not isinstance(current, str):
        raise KindfixError(f"{config_file}: currentContext is not a string", hint=_HINT)
    if not current:
        return DEFAULT_CONTEXT, ""
    return current, f"currentContext in {config_file}"


def _from_context(name: str, origin: str, config_dir: Path) -> EngineEndpoint:
    digest = context_dir_name(name)
    meta_file = config_dir / "contexts" / "meta" / digest / "meta.json"
    meta = _read_json(meta_file, what=f"metadata of docker context {name!r}")
    if meta is None:
        raise KindfixError(
            f"docker context {name!r} (set by {origin}) does not exist: no {meta_file}", hint=_HINT
        )
    endpoints = meta.get("Endpoints")
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    host = docker.get("Host") if isinstance(docker, dict) else None
    if not isinstance(host, str) or not host:
        raise KindfixError(
            f"docker context {name!r} has no Endpoints.docker.Host in {meta_file}", hint=_HINT
        )
    assert isinstance(docker, dict)  # narrowed above: host came from it
    skip_verify = bool(docker.get("SkipTLSVerify", False))
    ca, cert, key = _tls_files(config_dir / "contexts" / "tls" / digest / "docker")
    tls = any((ca, cert, key)) or skip_verify
    return EngineEndpoint(
        host,
        source=f"context {name} ({origin})",
        context=name,
        tls=tls,
        tls_verify=tls and not skip_verify,
        ca_cert=ca,
        client_cert=cert,
        client_key=key,
    )


def _tls_files(directory: Path) -> tuple[str | None, str | None, str | None]:
    """ca.pem, cert.pem, key.pem in `directory`, None for each one that is absent."""
    found = []
    for file_name in ("ca.pem", "cert.pem", "key.pem"):
        path = directory / file_name
        found.append(str(path) if path.is_file() else None)
    return found[0], found[1], found[2]


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    """Parsed JSON object, None when the file does not exist, KindfixError when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise KindfixError(
            f"cannot read the {what} {path}: {err.strerror}", hint="check its permissions"
        ) from err
    try:
        data = json.loads(text)
    except ValueError as err:
        raise KindfixError(
            f"the {what} {path} is not valid JSON: {err}",
            hint="fix or remove the file, or set DOCKER_HOST to bypass it",
        ) from err
    if not isinstance(data, dict):
        raise KindfixError(
            f"the {what} {path} is not a JSON object",
            hint="fix or remove the file, or set DOCKER_HOST to bypass it",
        )
    return data
