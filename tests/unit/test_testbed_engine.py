"""testbed.engine.ping_socket against a socket that is there but not (yet) an engine.

While dockerd or `podman system service` starts, the socket file exists before anybody listens.
CI once failed on exactly that (test_podman set-up): the SDK's refused connect left its socket
unclosed (docker-py#3356), and pytest (warnings are errors here) reported the ResourceWarning."""
from __future__ import annotations

import gc
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker.api.client
import pytest

from testbed.engine import ping_socket, start_daemon

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


@contextmanager
def marked_daemon(tmp_path: Path, script: str, tag: str) -> Iterator[str]:
    """`sh -c script` started by start_daemon, its $0 a marker unique to this test (kept by the
    script's trailing `; true`); killed by that marker afterwards. Yields the marker."""
    marker = f"kindfix-daemon-{tag}-{os.getpid()}"
    start_daemon(["sh", "-c", f"{script}; true", marker], tmp_path / "daemon.log")
    try:
        yield marker
    finally:
        subprocess.run(["pkill", "-f", marker], timeout=10, check=False)


def test_start_daemon_leaves_no_child_behind(tmp_path: Path) -> None:
    """dockerd and the podman service outlive the test run: no Popen handle to a running child
    may be left for interpreter exit (it printed 'subprocess ... is still running' in CI)."""
    with marked_daemon(tmp_path, "sleep 20", "test") as marker:
        with pytest.raises(ChildProcessError):
            os.waitpid(-1, os.WNOHANG)  # no child of ours: setsid forked it away
        running = ""
        for _ in range(50):  # the fork may still be on its way: at most 5 s
            running = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True,
                                     timeout=10, check=False).stdout.strip()
            if running:
                break
            time.sleep(0.1)
        assert running, "the daemon is not running"


def test_start_daemon_runs_it_in_the_root_directory(tmp_path: Path) -> None:
    """Not in the caller's directory, which may be a checkout removed while the daemon runs
    (podman's conmon then fails every container start: "Failed to get working directory")."""
    said = tmp_path / "cwd"
    with marked_daemon(tmp_path, f'pwd > "{said}"; sleep 20', "cwd"):
        for _ in range(50):  # the fork may still be on its way: at most 5 s
            if said.exists() and said.read_text():
                break
            time.sleep(0.1)
        assert said.read_text().strip() == "/"
