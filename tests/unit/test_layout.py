"""The package's shape (#12): no module over MAX_LINES, no import cycle, and every module in
one room of the map in kindfix/__init__.py, using only its own room and the rooms above it.

Modules still being split are named in STILL_TO_SPLIT; the list may only shrink: take a module
off once it is split (a name that is no longer a file fails here, so the list cannot go stale).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kindfix"
MAX_LINES = 400
# Over the limit, or being changed by others while the rest was split; not to be added to.
STILL_TO_SPLIT: frozenset[str] = frozenset()


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def _module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported, `if TYPE_CHECKING:` ones included (a
    cycle hidden from the interpreter is still a cycle to a reader). Imports inside functions
    are lazy on purpose (ruff PLC0415 is off for them) and are left out."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        stmt = pending.pop()
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            yield stmt
        elif isinstance(stmt, (ast.If, ast.Try)):
            pending += stmt.body + stmt.orelse + getattr(stmt, "finalbody", [])
            pending += [s for h in getattr(stmt, "handlers", []) for s in h.body]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for stmt in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(stmt, ast.Import):
                targets.update(a.name for a in stmt.names)
            elif stmt.level == 0 and stmt.module:
                targets.add(stmt.module)
                targets.update(f"{stmt.module}.{a.name}" for a in stmt.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_is_over_the_limit_but_those_still_to_split() -> None:
    too_long = {}
    for path in _modules().values():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and _rel(path) not in STILL_TO_SPLIT:
            too_long[_rel(path)] = lines
    assert not too_long, (f"over {MAX_LINES} lines: {too_long}; split along a real seam "
                          "(STYLE.md 7), do not add to STILL_TO_SPLIT")


def test_the_still_to_split_list_names_only_files_that_exist() -> None:
    files = {_rel(p) for p in _modules().values()}
    gone = sorted(STILL_TO_SPLIT - files)
    assert not gone, f"take {gone} off STILL_TO_SPLIT in {Path(__file__).name}: no such module"


def test_no_import_cycle_but_among_modules_still_to_split() -> None:
    modules = _modules()
    found = [c for c in cycles(import_graph(modules))
             if not all(_rel(modules[m]) in STILL_TO_SPLIT for m in c)]
    assert not found, f"import cycles: {found}"


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}}, [["a", "b", "c"]]),
])
def test_cycles_finds_exactly_the_loops(graph: dict[str, set[str]],
                                         expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_the_graph_sees_the_import_forms_the_package_uses(tmp_path: Path) -> None:
    """`from kindfix import x`, `from kindfix.x import y`, `import kindfix.x`, and imports under
    `if TYPE_CHECKING:` are edges; an import inside a function is not."""
    files = {
        "a.py": "from kindfix import b\n",
        "b.py": "import kindfix.c\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kindfix.d import X\n",
        "d.py": "X = 1\ndef f():\n    from kindfix.a import b\n",
    }
    modules = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        modules[f"kindfix.{name[:-3]}"] = tmp_path / name
    assert import_graph(modules) == {"kindfix.a": {"kindfix.b"}, "kindfix.b": {"kindfix.c"},
                                     "kindfix.c": {"kindfix.d"}, "kindfix.d": set()}


def rooms(doc: str) -> list[tuple[str, list[str]]]:
    """The map in kindfix/__init__.py's docstring: (room, modules), top first. A room is a
    paragraph at the margin (its name before ':' or ' (') followed by indented lines of
    comma-separated module names; a paragraph with no such lines is prose."""
    found: list[tuple[str, list[str]]] = []
    starts = True  # the line before was blank or indented: a margin line begins a paragraph
    for line in doc.splitlines():
        if line.startswith("    "):
            if found:
                found[-1][1].extend(w.strip() for w in line.split(",") if w.strip())
            starts = True
        elif not line.strip():
            starts = True
        else:
            if starts:
                found.append((line.split(":")[0].split(" (")[0], []))
            starts = False
    return [(room, members) for room, members in found if members]


def _top(module: str) -> str:
    """kindfix.audit.report -> audit (a subpackage is one room member)."""
    return module.split(".")[1] if "." in module else module


def test_every_module_is_in_one_room_of_the_map() -> None:
    import kindfix

    named = [m for _, members in rooms(kindfix.__doc__ or "") for m in members]
    modules = {_top(m) for m in _modules()} - {"kindfix", "__main__"}
    assert sorted(set(named)) == sorted(named), "a module named in two rooms"
    assert sorted(modules - set(named)) == [], "add it to the map in kindfix/__init__.py"
    assert sorted(set(named) - modules) == [], "the map names a module that is no more"


def test_no_module_uses_a_room_below_its_own() -> None:
    import kindfix

    room_of = {m: i for i, (_, members) in enumerate(rooms(kindfix.__doc__ or ""))
               for m in members}
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph(_modules()).items()
                    for b in targets if _top(a) in room_of and _top(b) in room_of
                    and room_of[_top(b)] > room_of[_top(a)])
    assert upward == [], "move the module, or the code it needs, to the right room"


def test_the_map_parser_reads_rooms_and_members() -> None:
    doc = "title\n\nfirst: what\n    a, b,\n    c\nsecond (a note\nover two lines)\n    d\n"
    assert rooms(doc) == [("first", ["a", "b", "c"]), ("second", ["d"])]
