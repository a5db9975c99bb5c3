"""The shell scripts kindfix runs inside nodes (`sh -c SCRIPT $0 ARGS...`), shipped as package data
in kindfix/scripts/: one `<name>.sh` per script, shared functions in kindfix/scripts/lib/.

Why files: each is read, reviewed and checked as shell (`make lint` runs `shellcheck -s sh` on
every file; tests/unit/test_nodescripts.py runs `sh -n` and shellcheck on every composed script),
and a test runs each with a real `sh`. Arguments always travel as argv, never in the text.

Composition: some scripts share functions that must behave the same everywhere (`durable`, the
fsync; `complete_or_abort`, the refusal of a partial write; `keep`, the first backup; the temp-file
trap). Each lives once, in lib/<part>.sh. A file names what it needs in its header comment,
`# needs: part part`; `script(name)` puts the parts first (a part's own needs before it, each part
once, in the order named), then the body: one text for `sh -c`. Chosen over self-contained files so
a fix to one of those functions reaches every script that uses it. The leading comment block of
every file (what it does, its arguments, its output) is kept out of the text sent to the node, but
for its shellcheck directives.

The test fakes (tests/fakes.py) recognise a script by its name through `name_of`, so a changed
script needs no change to a fake.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc from 3.11 on; importlib.abc warns from 3.12
    from importlib.abc import Traversable

_DIR = "scripts"
_LIB = "lib"
_NEEDS = re.compile(r"^#\s*needs:(.*)$")
_DIRECTIVE = re.compile(r"^#\s*shellcheck\s")


def _root() -> Traversable:
    """kindfix/scripts where kindfix is installed (a directory, or inside a zip)."""
    return resources.files("kindfix").joinpath(_DIR)


def _read(*parts: str) -> str:
    path = _root()
    for part in parts:  # one step at a time: a zipped package's joinpath takes one name
        path = path.joinpath(part)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LookupError(f"kindfix ships no node script {'/'.join(parts)}") from None


def _split(text: str) -> tuple[list[str], str]:
    """(needs, body): the header comment block names the needs and is dropped from the body,
    except shellcheck directives (they apply to the command after them, in the text as sent)."""
    lines = text.splitlines(keepends=True)
    needs: list[str] = []
    kept: list[str] = []
    i = 0
    while i < len(lines) and (lines[i].startswith("#") or not lines[i].strip()):
        m = _NEEDS.match(lines[i].rstrip("\n"))
        if m:
            needs.extend(m.group(1).split())
        elif _DIRECTIVE.match(lines[i]):
            kept.append(lines[i])
        i += 1
    return needs, "".join(kept + lines[i:])


@cache
def _part(name: str) -> tuple[tuple[str, ...], str]:
    needs, body = _split(_read(_LIB, f"{name}.sh"))
    return tuple(needs), body


def _resolve(needs: list[str] | tuple[str, ...], seen: list[str], chain: tuple[str, ...]) -> None:
    for need in needs:
        if need in chain:
            raise LookupError(f"node script parts need each other: {' -> '.join((*chain, need))}")
        if need not in seen:
            _resolve(_part(need)[0], seen, (*chain, need))
            seen.append(need)


@cache
def script(name: str) -> str:
    """The text of node script `name` (kindfix/scripts/<name>.sh) with the parts it needs."""
    needs, body = _split(_read(f"{name}.sh"))
    parts: list[str] = []
    _resolve(needs, parts, (name,))
    return "".join(_part(p)[1] for p in parts) + body


@cache
def names() -> tuple[str, ...]:
    """Every shipped script (not the parts), sorted."""
    root = _root()
    return tuple(sorted(p.name[: -len(".sh")] for p in root.iterdir()
                        if p.name.endswith(".sh") and p.is_file()))


@cache
def parts() -> tuple[str, ...]:
    """Every shared part in lib/, sorted."""
    root = _root().joinpath(_LIB)
    return tuple(sorted(p.name[: -len(".sh")] for p in root.iterdir()
                        if p.name.endswith(".sh") and p.is_file()))


@cache
def _by_text() -> dict[str, str]:
    return {script(n): n for n in names()}


def name_of(text: str) -> str | None:
    """The name of the shipped script whose text this is, else None (the reverse of `script`)."""
    return _by_text().get(text)
