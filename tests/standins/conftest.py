"""Fixtures for host-side stand-in tests: a temp directory posing as a node's root
(KINDBED_ROOT), a runner for the stand-in programs, and cleanup of every process they left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import cycle
from pathlib import Path

import pytest
import yaml

from testbed.standins import pki, state
from testbed.standins.paths import image_dir_name

REPO = Path(__file__).resolve().parents[2]
IMAGE = "registry.k8s.io/fake:1.0"


class NodeRoot:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def write(self, node_path: str, text: str, mode: int = 0o644) -> Path:
        p = self.path(node_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)
        return p

    def image(self, ref: str = IMAGE, tools: dict[str, str] | None = None) -> Path:
        """An image dir with executable shell tools in bin/."""
        bin_dir = self.path(f"/var/lib/kindbed/images/{image_dir_name(ref)}/bin")
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, body in (tools or {}).items():
            f = bin_dir / name
            f.write_text("#!/bin/sh\n" + body)
            f.chmod(0o755)
        return bin_dir

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "KINDBED_ROOT": str(self.root), "PYTHONPATH": str(REPO), **extra}

    def run(
        self, program: str, *args: str, stdin: str | None = None, timeout: float = 20, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", f"testbed.standins.{program}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**env),
            cwd=str(REPO),
            check=False,
        )

    def spawn(self, program: str, *args: str, **env: str) -> subprocess.Popen[str]:
        with open(self.root / f"{program}.log", "a") as log:
            return subprocess.Popen(
                [sys.executable, "-m", f"testbed.standins.{program}", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                env=self.env(**env),
                cwd=str(REPO),
            )


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(
    capsys: pytest.CaptureFixture[str], main: Callable[[list[str]], int], *args: str
) -> Result:
    """A stand-in's main() in this process: much faster than a subprocess (and the key pool
    applies); the programs are also run as real processes elsewhere."""
    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return Result(rc, out.out, out.err)


def pod_manifest(
    name: str, command: list[str], image: str = IMAGE, env: dict[str, str] | None = None
) -> str:
    container = {"name": name, "image": image, "command": command}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"containers": [container]},
        }
    )


def wait_for(what: str, probe: Callable[[], object], timeout: float = 8.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NodeRoot]:
    monkeypatch.setenv("KINDBED_ROOT", str(tmp_path))
    yield NodeRoot(tmp_path)
    # Kill whatever containers the test left running (their shims then exit by themselves).
    for c in state.load_containers():
        state.signal_container(c, signal.SIGKILL)


@pytest.fixture(scope="session")
def _key_pool() -> list[object]:
    return [pki.new_key() for _ in range(4)]


@pytest.fixture(autouse=True)
def _fast_keys(_key_pool: list[object], monkeypatch: pytest.MonkeyPatch) -> None:
    """RSA-2048 generation dominates in-process test time: hand out pre-made keys in rotation
    (consecutive certificates still get distinct keys, so "signed by another CA" stays testable).
    Stand-ins run as subprocesses still generate their own."""
    keys = cycle(_key_pool)
    monkeypatch.setattr(pki, "new_key", lambda: next(keys))
