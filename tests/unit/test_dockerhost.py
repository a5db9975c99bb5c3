from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kindfix.dockerhost import (
    DEFAULT_SOCKET,
    PODMAN_ROOT_SOCKET,
    context_dir_name,
    resolve_endpoint,
)
from kindfix.errors import KindfixError


def write_context(
    config_dir: Path,
    name: str,
    host: str,
    skip_verify: bool = False,
    tls_files: tuple[str, ...] = (),
) -> Path:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta_dir = config_dir / "contexts" / "meta" / digest
    meta_dir.mkdir(parents=True)
    meta = {
        "Name": name,
        "Metadata": {"Description": name},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}},
    }
    (meta_dir / "meta.json").write_text(json.dumps(meta))
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    for file_name in tls_files:
        tls_dir.mkdir(parents=True, exist_ok=True)
        (tls_dir / file_name).write_text("PEM")
    return tls_dir


def write_config(config_dir: Path, current: str | None) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    data = {"auths": {}} if current is None else {"auths": {}, "currentContext": current}
    (config_dir / "config.json").write_text(json.dumps(data))


def test_context_dir_is_sha256_of_name() -> None:
    # The store directory the docker CLI really created for a context named "local"
    # (DOCKER_CERT_PATH printed by morecontainers/docker-context-env's README).
    assert (
        context_dir_name("local")
        == "25bf8e1a2393f1108d37029b3df5593236c755742ec93465bbafa9b290bddcf6"
    )
    assert len(context_dir_name("desktop-linux")) == 64


def test_nothing_configured_gives_default_socket(tmp_path: Path) -> None:
    ep = resolve_endpoint({}, home=tmp_path, euid=1000)
    assert ep.base_url == DEFAULT_SOCKET
    assert ep.context == "default"
    assert not ep.tls
    assert ep.provider == "docker"


def test_config_without_current_context_gives_default_socket(tmp_path: Path) -> None:
    write_config(tmp_path / ".docker", None)
    ep = resolve_endpoint({}, home=tmp_path)
    assert ep.base_url == DEFAULT_SOCKET
    assert ep.source == "default socket"


def test_docker_host_plain(tmp_path: Path) -> None:
    write_config(tmp_path / ".docker", "colima")  # DOCKER_HOST must win over the config
    ep = resolve_endpoint({"DOCKER_HOST": "tcp://10.0.0.5:2375"}, home=tmp_path)
    assert ep.base_url == "tcp://10.0.0.5:2375"
    assert ep.source == "DOCKER_HOST"
    assert not ep.tls


def test_docker_host_beats_docker_context(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "unix:///tmp/x.sock", "DOCKER_CONTEXT": "missing"}
    assert resolve_endpoint(env, home=tmp_path).base_url == "unix:///tmp/x.sock"


def test_docker_host_tls_verify_uses_cert_path(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).write_text("x")
    env = {
        "DOCKER_HOST": "tcp://host:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(certs),
    }
    ep = resolve_endpoint(env, home=tmp_path)
    assert ep.tls
    assert ep.tls_verify
    assert ep.ca_cert == str(certs / "ca.pem")
    assert ep.client_cert == str(certs / "cert.pem")
    assert ep.client_key == str(certs / "key.pem")


def test_docker_tls_verify_defaults_cert_path_to_home_docker(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "ca.pem").write_text("x")
    env = {"DOCKER_HOST": "tcp://host:2376", "DOCKER_TLS_VERIFY": "1"}
    ep = resolve_endpoint(env, home=tmp_path)
    assert ep.ca_cert == str(tmp_path / ".docker" / "ca.pem")
    assert ep.client_cert is None


def test_empty_docker_tls_verify_means_no_tls(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "tcp://host:2375", "DOCKER_TLS_VERIFY": ""}
    assert not resolve_endpoint(env, home=tmp_path).tls


@pytest.mark.parametrize(
    ("name", "host"),
    [
        ("desktop-linux", "unix:///home/u/.docker/desktop/docker.sock"),
        ("colima", "unix:///home/u/.colima/default/docker.sock"),
        ("orbstack", "unix:///home/u/.orbstack/run/docker.sock"),
        ("rancher-desktop", "unix:///home/u/.rd/docker.sock"),
    ],
)
def test_current_context_from_config(tmp_path: Path, name: str, host: str) -> None:
    config_dir = tmp_path / ".docker"
    write_config(config_dir, name)
    write_context(config_dir, name, host)
    ep = resolve_endpoint({}, home=tmp_path)
    assert ep.base_url == host
    assert ep.context == name
    assert not ep.tls
    assert ep.source == f"context {name} (currentContext in {config_dir / 'config.json'})"


def test_docker_context_env_beats_config(tmp_path: Path) -> None:
    config_dir = tmp_path / ".docker"
    write_config(config_dir, "colima")
    write_context(config_dir, "colima", "unix:///colima.sock")
    write_context(config_dir, "remote", "tcp://remote:2375")
    ep = resolve_endpoint({"DOCKER_CONTEXT": "remote"}, home=tmp_path)
    assert ep.base_url == "tcp://remote:2375"
    assert ep.source == "context remote (DOCKER_CONTEXT)"


def test_docker_context_default_means_default_socket(tmp_path: Path) -> None:
    write_config(tmp_path / ".docker", "colima")
    ep = resolve_endpoint({"DOCKER_CONTEXT": "default"}, home=tmp_path)
    assert ep.base_url == DEFAULT_SOCKET
    assert ep.source == "default socket (DOCKER_CONTEXT)"


def test_docker_config_env_moves_config_dir(tmp_path: Path) -> None:
    config_dir = tmp_path / "elsewhere"
    write_config(config_dir, "orbstack")
    write_context(config_dir, "orbstack", "unix:///orb.sock")
    ep = resolve_endpoint({"DOCKER_CONFIG": str(config_dir)}, home=tmp_path / "nohome")
    assert ep.base_url == "unix:///orb.sock"


def test_context_tls_material(tmp_path: Path) -> None:
    config_dir = tmp_path / ".docker"
    write_config(config_dir, "secure")
    tls_dir = write_context(
        config_dir, "secure", "tcp://h:2376", tls_files=("ca.pem", "cert.pem", "key.pem")
    )
    ep = resolve_endpoint({}, home=tmp_path)
    assert ep.tls
    assert ep.tls_verify
    assert ep.ca_cert == str(tls_dir / "ca.pem")
    assert ep.client_key == str(tls_dir / "key.pem")


def test_context_skip_tls_verify(tmp_path: Path) -> None:
    config_dir = tmp_path / ".docker"
    write_config(config_dir, "insecure")
    write_context(config_dir, "insecure", "tcp://h:2376", skip_verify=True, tls_files=("cert.pem",))
    ep = resolve_endpoint({}, home=tmp_path)
    assert ep.tls
    assert not ep.tls_verify
    assert ep.ca_cert is None


def test_home_comes_from_environ(tmp_path: Path) -> None:
    write_config(tmp_path / ".docker", "colima")
    write_context(tmp_path / ".docker", "colima", "unix:///c.sock")
    assert resolve_endpoint({"HOME": str(tmp_path)}).base_url == "unix:///c.sock"


def test_broken_config_json_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text("{not json")
    with pytest.raises(KindfixError) as info:
        resolve_endpoint({}, home=tmp_path)
    assert "config.json" in info.value.message
    assert "not valid JSON" in info.value.message
    assert info.value.hint is not None
    assert "DOCKER_HOST" in info.value.hint


def test_config_json_not_an_object(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text("[]")
    with pytest.raises(KindfixError, match="not a JSON object"):
        resolve_endpoint({}, home=tmp_path)


def test_missing_context_is_a_clear_error(tmp_path: Path) -> None:
    write_config(tmp_path / ".docker", "gone")
    with pytest.raises(KindfixError) as info:
        resolve_endpoint({}, home=tmp_path)
    config_file = tmp_path / ".docker" / "config.json"
    assert info.value.message.startswith(
        f"docker context 'gone' (set by currentContext in {config_file}) does not exist: no "
    )
    assert info.value.hint is not None
    assert "docker context" in info.value.hint


def test_context_without_docker_endpoint(tmp_path: Path) -> None:
    config_dir = tmp_path / ".docker"
    write_config(config_dir, "odd")
    meta_dir = config_dir / "contexts" / "meta" / context_dir_name("odd")
    meta_dir.mkdir(parents=True)
    (meta_dir / "meta.json").write_text(json.dumps({"Name": "odd", "Endpoints": {}}))
    with pytest.raises(KindfixError, match=r"no Endpoints\.docker\.Host"):
        resolve_endpoint({}, home=tmp_path)


def test_corrupt_context_meta(tmp_path: Path) -> None:
    config_dir = tmp_path / ".docker"
    write_config(config_dir, "odd")
    meta_dir = config_dir / "contexts" / "meta" / context_dir_name("odd")
    meta_dir.mkdir(parents=True)
    (meta_dir / "meta.json").write_text("\x00garbage")
    with pytest.raises(KindfixError, match="metadata of docker context 'odd'"):
        resolve_endpoint({}, home=tmp_path)


def test_podman_rootless_uses_xdg_runtime_dir(tmp_path: Path) -> None:
    env = {"KIND_EXPERIMENTAL_PROVIDER": "podman", "XDG_RUNTIME_DIR": "/run/user/1234"}
    ep = resolve_endpoint(env, home=tmp_path, euid=1234)
    assert ep.base_url == "unix:///run/user/1234/podman/podman.sock"
    assert ep.provider == "podman"


def test_podman_rootless_without_xdg(tmp_path: Path) -> None:
    env = {"KIND_EXPERIMENTAL_PROVIDER": "podman"}
    ep = resolve_endpoint(env, home=tmp_path, euid=1001)
    assert ep.base_url == "unix:///run/user/1001/podman/podman.sock"


def test_podman_root(tmp_path: Path) -> None:
    env = {"KIND_EXPERIMENTAL_PROVIDER": "podman", "XDG_RUNTIME_DIR": "/run/user/0"}
    ep = resolve_endpoint(env, home=tmp_path, euid=0)
    assert ep.base_url == PODMAN_ROOT_SOCKET


def test_podman_respects_docker_host(tmp_path: Path) -> None:
    env = {"KIND_EXPERIMENTAL_PROVIDER": "podman", "DOCKER_HOST": "unix:///p.sock"}
    ep = resolve_endpoint(env, home=tmp_path, euid=1000)
    assert ep.base_url == "unix:///p.sock"
    assert ep.provider == "podman"
