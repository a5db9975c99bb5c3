"""What users install: the wheel, built from the tree as a clone has it, in a fresh venv, run from
a directory outside the checkout (issue #8: an editable install hid that patches/ was not in it).

Needs PyPI for the build backend and kindfix's dependencies; about 30 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
DUMPS = sorted(p for p in (REPO / "fixtures" / "dumps").iterdir() if p.is_dir())
EXIT_OK, EXIT_FINDINGS = 0, 4


def _clone_files(repo: Path) -> list[str]:
    """The files a clone of the tree would have: tracked, plus new ones git does not ignore."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], capture_output=True, check=True, timeout=60)
    return [f for f in out.stdout.decode().split("\0") if f]


def _copy_tree(dest: Path) -> None:
    for rel in _clone_files(REPO):
        src = REPO / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree, not yet committed
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)


class Installed:
    def __init__(self, root: Path, wheel: Path) -> None:
        self.root = root  # outside the checkout: the cwd of every command
        self.wheel = wheel
        self.bin = root / "venv" / "bin"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["DOCKER_HOST"] = "unix:///nonexistent/kindfix-wheel-test.sock"  # no engine needed
        done = subprocess.run([str(self.bin / argv[0]), *argv[1:]], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        print(argv, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
        return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    _copy_tree(src)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(root / "dist"),
                    str(src)], check=True, capture_output=True, timeout=600)
    wheel = next((root / "dist").glob("kindfix-*.whl"))
    shutil.rmtree(src)  # nothing of the checkout is left to import from
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    subprocess.run([str(root / "venv" / "bin" / "pip"), "install", "-q",
                    "--disable-pip-version-check", str(wheel)], check=True, capture_output=True,
                   timeout=600)
    return Installed(root, wheel)


def test_the_wheel_holds_the_data_and_not_the_test_bed(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "kindfix/patches/addresses.yaml" in names
    assert "kindfix/py.typed" in names
    assert not [n for n in names if n.startswith(("testbed/", "tests/", "fixtures/"))]
    # every node script and shared part (kindfix/nodescripts.py reads them at run time)
    shipped = sorted(p.relative_to(REPO).as_posix()
                     for p in (REPO / "kindfix" / "scripts").rglob("*.sh"))
    assert shipped
    assert [n for n in shipped if n not in names] == []


def test_the_installed_package_reads_its_node_scripts(installed: Installed) -> None:
    # from the installed wheel, not the checkout: each script composes (its parts are there)
    code = ("from kindfix import nodescripts as n; names = n.names(); "
            "assert 'lock-acquire' in names and 'journal-replace' in names, names; "
            "assert 'complete_or_abort()' in n.script('journal-replace'); "
            "print(n.__file__, len(names))")
    done = installed.run("python", "-c", code)
    assert done.returncode == EXIT_OK, done.stderr
    assert str(REPO) not in done.stdout


def test_version_and_help_from_outside_the_checkout(installed: Installed) -> None:
    done = installed.run("kindfix", "--version")
    assert done.returncode == EXIT_OK
    assert done.stdout.startswith("kindfix, version ")
    assert installed.run("kindfix", "--help").returncode == EXIT_OK
    # the test bed (which installs docker.io and starts dockerd) is not shipped to users
    assert installed.run("python", "-c", "import testbed").returncode != 0


@pytest.mark.parametrize("dump", DUMPS, ids=[d.name for d in DUMPS])
def test_every_fixture_dump_audits_as_named(installed: Installed, dump: Path) -> None:
    done = installed.run("kindfix", "audit", "--from-dump", str(dump))
    want = EXIT_OK if dump.name.endswith("-healthy") else EXIT_FINDINGS
    assert done.returncode == want, done.stderr
    assert "internal error" not in done.stderr


def test_an_engine_that_is_not_there_is_one_line(installed: Installed) -> None:
    done = installed.run("kindfix", "clusters")
    assert done.returncode == 1
    assert done.stderr.startswith("kindfix: error: ")
    assert "Traceback" not in done.stderr
