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
    # node.py, backoff.py, probes.py, verify.py, retention.py (kubelet.py sends node.py's)
    assert {"read-files", "write-file", "restart-pods", "refresh-kubelet", "backoff-clear",
            "backoff-running", "etcd-probe", "kube-api", "through-lb", "prune-backups"} <= set(
        nodescripts.names())
    assert "stop-then-remove" in nodescripts.parts()


def test_the_fake_node_answers_the_file_scripts_by_name() -> None:
    # ContainerNode's batched read and atomic write, over the fake engine: the fake's own
    # answers (tests/fakes.py) are found by the scripts' names
    from kindfix.node import ContainerNode
    from tests.fakes import FakeRuntime, container

    fake = FakeNode("n", files={"/a": b"A"})
    node = ContainerNode(FakeRuntime().add(container("n", "control-plane", "10.0.0.2"), fake),
                         "n", "control-plane")
    assert node.read_files(["/a", "/b"]) == {"/a": b"A", "/b": None}
    node.write_file("/c", b"C", 0o600)
    assert (fake.files["/c"], fake.modes["/c"]) == (b"C", 0o600)
    assert [c[3:] for c in fake.ran("read-files")] == [("kindfix-read", "/a", "/b")]
    assert len(fake.ran("write-file")) == 1
    assert fake.unhandled == []


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
             for name, line in long_shell_strings(p.read_text(encoding="utf-8"))]
    assert found == [], "node scripts belong in kindfix/scripts/*.sh (kindfix/nodescripts.py)"


# Any text sent as `sh -c TEXT` (a list or tuple literal starting "sh", "-c") must come from
# nodescripts.script() unless it is a one-liner of at most SHORT characters, e.g.
# `test -e "$1"` or `command -v kubectl`: a one-liner reads whole where it is used, and nothing
# in it needs a shell check. TEXT is followed through module-level names, concatenation and
# method calls on them (`_S.replace(...)`), so a script assigned once and sent elsewhere counts.
SHORT = 80  # characters, one line


def _constant_text(expr: ast.AST, names: dict[str, ast.AST], seen: frozenset[str]) -> str:
    """The string constants an expression is made of, module-level names followed."""
    out = []
    for c in ast.walk(expr):
        if isinstance(c, ast.Constant) and isinstance(c.value, str):
            out.append(c.value)
        elif isinstance(c, ast.Name) and c.id in names and c.id not in seen:
            out.append(_constant_text(names[c.id], names, seen | {c.id}))
    return "".join(out)


def module_constants(source: str) -> dict[str, ast.AST]:
    """name -> value of the module-level assignments in source."""
    names: dict[str, ast.AST] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            names[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                node.value is not None:
            names[node.target.id] = node.value
    return names


def inline_sh_c_scripts(source: str, imported: dict[str, ast.AST] | None = None
                        ) -> list[tuple[str, int]]:
    """(name, line) of every `sh -c` text in source that is not a one-liner of SHORT
    characters and does not come from nodescripts.script(); name is the module-level constant
    it came from, else "<inline>". `imported`: other modules' constants (a script defined in
    one module and sent from another, as node.REFRESH_KUBELET from kubelet.py)."""
    tree = ast.parse(source)
    names = {**(imported or {}), **module_constants(source)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.List, ast.Tuple)) or len(node.elts) < 3:
            continue
        head = [e.value if isinstance(e, ast.Constant) else None for e in node.elts[:2]]
        if head != ["sh", "-c"]:
            continue
        expr = node.elts[2]
        if any(isinstance(c, ast.Name) and c.id == "script" for c in ast.walk(expr)):
            continue  # nodescripts.script(name): a shipped file
        text = _constant_text(expr, names, frozenset())
        if "\n" in text.strip("\n") or len(text.strip()) > SHORT:
            name = next((c.id for c in ast.walk(expr)
                         if isinstance(c, ast.Name) and c.id in names), "<inline>")
            found.append((name, node.lineno))
    return sorted(found, key=lambda f: f[1])


def test_the_sh_c_guard_follows_names_and_spares_one_liners() -> None:
    source = '''
from kindfix.nodescripts import script
_A = "set -e\\n" + "rm -f \\"$1\\"\\n"
_B = _A + "echo done\\n"
run(["sh", "-c", _B, "kindfix-b", "x"])
run(["sh", "-c", _A.replace("rm", "ls"), "kindfix-a"])
run(("sh", "-c", "for p; do rm -rf -- \\"$p\\" || exit; done; "
                 "echo removed every one of them, all gone now", "n"))
run(["sh", "-c", 'test -e "$1"', "kindfix-test", "/x"])
run(["sh", "-c", script("lock-status"), "kindfix-lock", "/l"])
def f(text): run(["sh", "-c", text])
'''
    assert inline_sh_c_scripts(source) == [("_B", 5), ("_A", 6), ("<inline>", 7)]
    # a script defined in another module and imported
    sent = 'from m import _S\nrun(["sh", "-c", _S, "kindfix-s"])\n'
    assert inline_sh_c_scripts(sent) == []
    assert inline_sh_c_scripts(sent, module_constants('_S = """\nfor p; do\n  :\ndone\n"""\n')) == [
        ("_S", 2)]




def test_no_node_script_is_sent_from_a_python_string() -> None:
    package = Path(nodescripts.__file__).parent
    sources = {p.relative_to(package.parent).as_posix(): p.read_text(encoding="utf-8")
               for p in sorted(package.rglob("*.py"))}
    every = {k: v for text in sources.values() for k, v in module_constants(text).items()}
    found = [(f"{path}:{line}", name) for path, text in sources.items()
             for name, line in inline_sh_c_scripts(text, every)]
    assert found == [], "node scripts belong in kindfix/scripts/*.sh (kindfix/nodescripts.py)"
