"""The path language of patches/addresses.yaml, and the `Document` interface it addresses.

A path points at one scalar (or several, with `[*]`); `walk` follows it through parsed YAML and
yields a `Ref` per scalar, which reads and changes it in place. Every node-file format
(yamldoc.py, flatdoc.py) is a `Document`: `find(path)` gives the refs, `dump()` the new bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from kindfix.errors import KindfixError

_SEGMENT = re.compile(r"\[(?P<sel>[^\]]*)\]|(?P<key>(?:\\.|[^.\[\\])+)")


@dataclass(frozen=True)
class Segment:
    key: str | None = None  # mapping key
    field: str | None = None  # [field=value] selector, or "flag" / "*"
    value: str | None = None


def parse_path(path: str) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    pos = 0
    while pos < len(path):
        if path[pos] == ".":
            pos += 1
            continue
        m = _SEGMENT.match(path, pos)
        if not m:
            raise ValueError(f"bad path {path!r} at {pos}")
        pos = m.end()
        if m.group("key") is not None:
            segments.append(Segment(key=re.sub(r"\\(.)", r"\1", m.group("key"))))
        elif m.group("sel") == "*":
            segments.append(Segment(field="*"))
        else:
            field, _, value = m.group("sel").partition("=")
            segments.append(Segment(field=field, value=value))
    return tuple(segments)


@dataclass
class Ref:
    """One addressed scalar: read it with `get`, change it with `set`.

    `pos` is the (line, column) where the scalar starts in the source and `raw` its whole text
    (for a flag item, `--flag=value`), so a document can splice the change into the original
    bytes and leave every other byte alone.
    """

    get: Callable[[], str]
    set: Callable[[str], None]
    pos: tuple[int, int] | None = None
    raw: Callable[[], str] | None = None
    text: bool = True  # False: the YAML scalar is a number, boolean or date, not a string


def _pos(container: Any, key: Any) -> tuple[int, int] | None:
    lc = getattr(container, "lc", None)
    if lc is None:
        return None
    try:
        pos = lc.item(key) if isinstance(container, list) else lc.value(key)
    except (KeyError, IndexError, TypeError):
        return None
    return (int(pos[0]), int(pos[1]))


def _flag_ref(items: Any, index: int, flag: str) -> Ref:
    prefix = flag + "="

    def setter(v: str) -> None:
        items[index] = prefix + v

    return Ref(lambda: str(items[index])[len(prefix):], setter, _pos(items, index),
               lambda: str(items[index]))


def _key_ref(mapping: Any, key: str) -> Ref:
    def setter(v: str) -> None:
        old = mapping[key]
        # keep the original quoting style of the scalar
        mapping[key] = type(old)(v) if isinstance(old, str) and type(old) is not str else v

    return Ref(lambda: str(mapping[key]), setter, _pos(mapping, key), lambda: str(mapping[key]),
               isinstance(mapping[key], str))


def _item_ref(items: Any, index: int) -> Ref:
    def getter() -> str:
        return str(items[index])

    def setter(v: str) -> None:
        items[index] = v

    return Ref(getter, setter, _pos(items, index), getter, isinstance(items[index], str))


def _walk_key(node: Any, seg: Segment, rest: tuple[Segment, ...]) -> Iterator[Ref]:
    if not isinstance(node, dict) or seg.key not in node:
        return
    if rest:
        yield from walk(node[seg.key], rest)
    elif node[seg.key] is not None and not isinstance(node[seg.key], (dict, list)):
        yield _key_ref(node, str(seg.key))


def _selected(item: Any, seg: Segment) -> bool:
    if seg.field == "*":
        return True
    return isinstance(item, dict) and str(item.get(seg.field)) == seg.value


def walk(node: Any, segments: tuple[Segment, ...]) -> Iterator[Ref]:
    seg, rest = segments[0], segments[1:]
    if seg.key is not None:
        yield from _walk_key(node, seg, rest)
        return
    if not isinstance(node, list):
        return
    for i, item in enumerate(node):
        if seg.field == "flag":
            if not rest and isinstance(item, str) and item.startswith(f"{seg.value}="):
                yield _flag_ref(node, i, str(seg.value))
        elif _selected(item, seg):
            if rest:
                yield from walk(item, rest)
            elif not isinstance(item, (dict, list)):
                yield _item_ref(node, i)


class Document(Protocol):
    def find(self, path: str) -> list[Ref]: ...

    def dump(self) -> bytes: ...


# Node files are input kindfix does not control; the hint of every refusal to read one.
RESTORE_HINT = "restore it from a backup or `kindfix rollback`"


def decode(text: bytes, source: str, what: str) -> str:
    """The file's text; KindfixError naming `source` when it is not UTF-8."""
    try:
        return text.decode()
    except UnicodeDecodeError as e:
        raise KindfixError(f"{source} is not {what}: byte 0x{text[e.start]:02x} at offset "
                           f"{e.start} is not UTF-8", hint=RESTORE_HINT) from None
