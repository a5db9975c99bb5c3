from __future__ import annotations

import base64
import hashlib
import subprocess

import pytest

from kindfix.errors import CommandError, KindfixError
from kindfix.node import (
    _READ_FILES_SCRIPT,
    _WRITE_FILE_SCRIPT,
    ContainerNode,
    parse_read_files_output,
)
from kindfix.runtime import ExecResult


class LocalRuntime:
    """Runs the node scripts with the host's sh: the same argv a container would get."""

    name = "local"

    def exec(self, container: str, argv: list[str], stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        p = subprocess.run(argv, input=stdin or b"", capture_output=True, timeout=30, check=False)
        return ExecResult(p.returncode, p.stdout, p.stderr)


def test_read_files_in_one_exec_with_binary_and_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = tmp_path / "a.yaml"
    a.write_bytes(b"x: 1\n@@kindfix ok 9\n")  # content that looks like a header
    b = tmp_path / "b.bin"
    b.write_bytes(bytes(range(256)))
    node = ContainerNode(LocalRuntime(), "n", "worker")  # type: ignore[arg-type]
    got = node.read_files([str(a), str(tmp_path / "missing"), str(b)])
    assert got == {str(a): a.read_bytes(), str(tmp_path / "missing"): None, str(b): b.read_bytes()}


def test_write_file_is_atomic_and_sets_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "sub" / "f.conf"
    node = ContainerNode(LocalRuntime(), "n", "worker")  # type: ignore[arg-type]
    node.write_file(str(target), b"hello\n", mode=0o600)
    assert target.read_bytes() == b"hello\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in target.parent.iterdir()] == ["f.conf"]  # no temp file left


def test_parse_rejects_unreadable() -> None:
    with pytest.raises(KindfixError, match="cannot be read"):
        parse_read_files_output(["/x"], b"@@kindfix unreadable 0\n")


def test_parse_ok() -> None:
    out = b"@@kindfix ok 0\n" + base64.b64encode(b"hi") + b"\n@@kindfix missing 1\n"
    assert parse_read_files_output(["/a", "/b"], out) == {"/a": b"hi", "/b": None}


def test_failed_exec_raises_command_error_with_pasteable_command() -> None:
    class Failing:
        name = "f"

        def exec(self, *_a: object, **_k: object) -> ExecResult:
            return ExecResult(2, b"", b"sh: boom\n")

    node = ContainerNode(Failing(), "kind-control-plane", "control-plane")  # type: ignore[arg-type]
    with pytest.raises(CommandError) as e:
        node.read_files(["/etc/x"])
    assert "docker exec kind-control-plane sh -c" in e.value.message
    assert e.value.exit_code == 2
    assert "boom" in e.value.message
    assert _READ_FILES_SCRIPT and _WRITE_FILE_SCRIPT


def test_a_truncated_write_never_replaces_the_original(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A client killed mid-stream ends stdin early: the partial file must not be renamed."""
    target = tmp_path / "journal.json"
    target.write_bytes(b'{"complete": true}')
    argv = ["sh", "-c", _WRITE_FILE_SCRIPT, "kindfix-write", str(target), "600",
            hashlib.sha256(b'{"complete": true, "more": 1}').hexdigest()]
    result = LocalRuntime().exec("n", argv, stdin=b'{"complete": tr')  # cut short
    assert result.exit_code == 5
    assert target.read_bytes() == b'{"complete": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["journal.json"]
