"""The node scripts shipped as package data (kindfix/nodescripts.py, kindfix/scripts/): each one
parses as POSIX sh and is shellcheck-clean as it is sent (parts and body together), names resolve
both ways, and a script's parts come first, once each."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kindfix import nodescripts
from tests.fakes import FakeNode, ok

SCRIPTS = Path(nodescripts.__file__).parent / "scripts"
SHELLCHECK = shutil.which("shellcheck")


def test_the_shipped_scripts_are_found() -> None:
    assert {"lock-acquire", "lock-status", "lock-remove", "lock-heartbeat"} <= set(
        nodescripts.names())
    assert {"durable", "temp-cleanup"} <= set(nodescripts.parts())


@pytest.mark.parametrize("name", nodescripts.names())
def test_every_script_parses_as_posix_sh(name: str) -> None:
    p = subprocess.run(["sh", "-n", "-c", nodescripts.script(name)], capture_output=True,
                       text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stderr


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (make lint has it)")
@pytest.mark.parametrize("name", nodescripts.names())
def test_every_script_is_shellcheck_clean_as_sent(name: str) -> None:
    p = subprocess.run([str(SHELLCHECK), "-s", "sh", "-"], input=nodescripts.script(name),
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stdout


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (make lint has it)")
def test_every_file_is_shellcheck_clean_alone() -> None:
    files = sorted(map(str, [*SCRIPTS.glob("*.sh"), *SCRIPTS.glob("lib/*.sh")]))
    p = subprocess.run([str(SHELLCHECK), "-s", "sh", *files], capture_output=True, text=True,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stdout


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (make lint has it)")
def test_the_check_fails_on_a_broken_script(tmp_path: Path) -> None:
    # the guard above can fail: an unquoted expansion is what it exists to catch
    bad = tmp_path / "bad.sh"
    bad.write_text('rm -f $1\n')
    assert subprocess.run([str(SHELLCHECK), "-s", "sh", str(bad)], capture_output=True,
                          timeout=60, check=False).returncode != 0


def test_a_script_is_sent_without_its_header_and_with_its_parts_first() -> None:
    text = nodescripts.script("lock-heartbeat")
    assert not text.startswith("#")
    assert text.startswith('first=""')
    source = (SCRIPTS / "lock-heartbeat.sh").read_text()
    assert source.startswith("#") and text in source


def test_parts_come_first_each_once_their_own_needs_before_them(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    root = tmp_path / "kindfix"
    (root / "scripts" / "lib").mkdir(parents=True)
    (root / "scripts" / "lib" / "a.sh").write_text("# part a\na() { :; }\n")
    (root / "scripts" / "lib" / "b.sh").write_text("# needs: a\nb() { a; }\n")
    (root / "scripts" / "lib" / "c.sh").write_text("# needs: c\n:\n")
    (root / "scripts" / "s.sh").write_text("# s\n# needs: b a\n\nb\n# body comment stays\n")
    (root / "scripts" / "loop.sh").write_text("# needs: c\n:\n")
    monkeypatch.setattr(nodescripts, "_root", lambda: root / "scripts")
    for cached in (nodescripts.script, nodescripts._part, nodescripts.names, nodescripts._by_text):
        cached.cache_clear()
    try:
        assert nodescripts.script("s") == "a() { :; }\nb() { a; }\nb\n# body comment stays\n"
        assert nodescripts.names() == ("loop", "s")
        with pytest.raises(LookupError, match="need each other: loop -> c -> c"):
            nodescripts.script("loop")
        with pytest.raises(LookupError, match="no node script nope.sh"):
            nodescripts.script("nope")
    finally:
        monkeypatch.undo()
        for cached in (nodescripts.script, nodescripts._part, nodescripts.names,
                       nodescripts._by_text):
            cached.cache_clear()


def test_name_of_is_the_reverse_of_script() -> None:
    for name in nodescripts.names():
        assert nodescripts.name_of(nodescripts.script(name)) == name
    assert nodescripts.name_of("true") is None


def test_the_fake_node_answers_a_script_by_its_name() -> None:
    node = FakeNode("n").on_script("lock-heartbeat", ok("@@kindfix alive\n"))
    argv = ["sh", "-c", nodescripts.script("lock-heartbeat"), "kindfix-heartbeat", "/l", "tok"]
    assert node.exec(argv).stdout == b"@@kindfix alive\n"
    assert node.ran("lock-heartbeat") == [tuple(argv)]
    # the text of another script, or a changed one, is not this script
    assert node.exec(["sh", "-c", nodescripts.script("lock-heartbeat") + " "]).exit_code == 127
    with pytest.raises(LookupError):
        node.on_script("lock-hartbeat", ok())


# Long scripts still kept as Python strings, by constant name (names survive a module's move):
# etcd_recovery.py and probes.py are converted separately (issue #12); the list only shrinks.
PENDING = {"_COPY_DATA", "_RESTORE", "_ETCD_SCRIPT"}
LONG = 15  # lines: issue #12's "no shell script of 15+ lines as a Python string"
_SHELLISH = re.compile(r'\$\(|"\$[0-9@]|\bthen\b|\bdone\b|\besac\b')


def long_shell_strings(source: str) -> list[tuple[str, int]]:
    """(assigned name, line) of every string constant of LONG+ lines that reads as shell."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target
        name = target.id if isinstance(target, ast.Name) else ast.dump(target)
        for c in ast.walk(node.value):
            if (isinstance(c, ast.Constant) and isinstance(c.value, str)
                    and len(c.value.strip("\n").splitlines()) >= LONG
                    and _SHELLISH.search(c.value)):
                found.append((name, c.lineno))
    return found


def test_the_guard_finds_a_long_script_in_a_string() -> None:
    script = "\n".join(['for p in "$@"; do'] + ["  : step"] * 14 + ["done"])
    assert long_shell_strings(f"_S = r'''\n{script}\n'''\nDOC = '''{'x' * 20}'''\n") == [
        ("_S", 1)]


def test_no_long_shell_script_is_left_as_a_python_string() -> None:
    package = Path(nodescripts.__file__).parent
    found = [(f"{p.relative_to(package.parent)}:{line}", name)
             for p in sorted(package.rglob("*.py"))
             for name, line in long_shell_strings(p.read_text(encoding="utf-8"))
             if name not in PENDING]
    assert found == [], "node scripts belong in kindfix/scripts/*.sh (kindfix/nodescripts.py)"
