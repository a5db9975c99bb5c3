"""testbed.engine.ping_socket against a socket that is there but not (yet) an engine.

While dockerd or `podman system service` starts, the socket file exists before anybody listens.
CI once failed on exactly that (test_podman set-up): the SDK's refused connect left its socket
unclosed (docker-py#3356), and pytest (warnings are errors here) reported the ResourceWarning."""
from __future__ import annotations

import gc
import socket
import warnings
from pathlib import Path

import docker.api.client
import pytest

from testbed.engine import ping_socket

# conftest's guard refuses to build SDK clients in unmarked tests; these talk only to their own
# socket in tmp_path, so they get the real constructor back.
_REAL_CLIENT_INIT = docker.api.client.APIClient.__init__


@pytest.fixture
def sdk_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker.api.client.APIClient, "__init__", _REAL_CLIENT_INIT)


def test_no_socket_file_is_no_engine(tmp_path: Path) -> None:
    assert ping_socket(tmp_path / "absent.sock") is None


@pytest.mark.usefixtures("sdk_clients")
@pytest.mark.parametrize("client_args", [{}, {"version": "auto"}])
def test_socket_file_without_listener_leaks_nothing(tmp_path: Path,
                                                    client_args: dict[str, str]) -> None:
    """The window CI hit: the file is there, nobody listens yet (connect is refused)."""
    path = tmp_path / "starting.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))  # bound, not listening: connect gets ECONNREFUSED
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert ping_socket(path, **client_args) is None
            gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
