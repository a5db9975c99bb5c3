"""A tiny path language over round-tripped YAML (and two non-YAML config formats).

The paths in patches/addresses.yaml point at one scalar each (or several, with `[*]`):

    spec.containers[name=etcd].command[flag=--initial-cluster]
    [kind=InitConfiguration].localAPIEndpoint.advertiseAddress      (multi-document file)
    KUBELET_KUBEADM_ARGS[flag=--node-ip]                             (kubeadm-flags.env)

Documents are edited in place with ruamel.yaml's round-trip mode, so comments, quoting and layout
survive; only the addressed scalars change.
"""

from __future__ import annotations

import functools
import io
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

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
        yield from _walk(node[seg.key], rest)
    elif node[seg.key] is not None and not isinstance(node[seg.key], (dict, list)):
        yield _key_ref(node, str(seg.key))


def _selected(item: Any, seg: Segment) -> bool:
    if seg.field == "*":
        return True
    return isinstance(item, dict) and str(item.get(seg.field)) == seg.value


def _walk(node: Any, segments: tuple[Segment, ...]) -> Iterator[Ref]:
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
                yield from _walk(item, rest)
            elif not isinstance(item, (dict, list)):
                yield _item_ref(node, i)


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    return y


class _Spliced:
    """Records scalar edits and writes them into the original text, byte for byte elsewhere.
    Falls back to ruamel's own dump only when a position cannot be found."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._edits: list[tuple[tuple[int, int] | None, str, str]] = []

    def track(self, ref: Ref) -> Ref:
        def setter(v: str) -> None:
            before = ref.raw() if ref.raw else ref.get()
            ref.set(v)
            after = ref.raw() if ref.raw else ref.get()
            self._edits.append((ref.pos, before, after))

        return Ref(ref.get, setter, ref.pos, ref.raw, ref.text)

    def splice(self, fallback: Callable[[], str]) -> str:
        if not self._edits:
            return self._text
        lines = self._text.splitlines(keepends=True)
        for pos, before, after in self._edits:
            if pos is None or pos[0] >= len(lines):
                return fallback()
            line, col = pos
            idx = lines[line].find(before, col)
            if idx < 0:
                return fallback()
            lines[line] = lines[line][:idx] + after + lines[line][idx + len(before):]
        return "".join(lines)


class Document(Protocol):
    def find(self, path: str) -> list[Ref]: ...

    def dump(self) -> bytes: ...


def _read_only(_value: str) -> None:
    raise TypeError("document was parsed read-only (editable=False)")


# Node files are input kindfix does not control. ruamel's composer recurses once per nesting
# level: ~500 nested flow collections raise RecursionError after seconds of work, so deeper flow
# nesting than any Kubernetes file has is refused before parsing.
MAX_FLOW_DEPTH = 64
_RESTORE_HINT = "restore it from a backup or `kindfix rollback`"


def _flow_depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}" and depth:
            depth -= 1
    return deepest


def _decode(text: bytes, source: str, what: str) -> str:
    try:
        return text.decode()
    except UnicodeDecodeError as e:
        raise KindfixError(f"{source} is not {what}: byte 0x{text[e.start]:02x} at offset "
                           f"{e.start} is not UTF-8", hint=_RESTORE_HINT) from None


class _YamlText:
    """Round-tripped YAML text: edits through `find` refs are spliced into the original."""

    def __init__(self, text: bytes, source: str, editable: bool = True) -> None:
        # reading only: the safe loader is about twice as fast (audit parses every file)
        self._yaml = _yaml() if editable else YAML(typ="safe")
        self._editable = editable
        decoded = _decode(text, source, "valid YAML")
        if _flow_depth(decoded) > MAX_FLOW_DEPTH:
            raise KindfixError(f"{source} is not valid YAML: nested deeper than "
                               f"{MAX_FLOW_DEPTH} levels", hint=_RESTORE_HINT)
        try:
            self._source_text = _Spliced(decoded)
            self._root = self._load(decoded)
        # ValueError: scalars the constructor cannot build (an int over 4300 digits, a date
        # like 2001-13-45); RecursionError: deep block nesting
        except (YAMLError, ValueError, RecursionError) as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise KindfixError(f"{source} is not valid YAML: {first}",
                               hint=_RESTORE_HINT) from e

    def _load(self, text: str) -> Any:
        return self._yaml.load(text)

    def _dump_root(self, out: io.StringIO) -> None:
        self._yaml.dump(self._root, out)

    def find(self, path: str) -> list[Ref]:
        refs = list(_walk(self._root, parse_path(path)))
        if not self._editable:
            return [Ref(r.get, _read_only, r.pos, r.raw, r.text) for r in refs]
        return [self._source_text.track(r) for r in refs]

    def _ruamel_dump(self) -> str:
        out = io.StringIO()
        self._dump_root(out)
        return out.getvalue()

    def dump_structure(self) -> bytes:
        """Serialise after structural edits (items added or removed)."""
        return self._ruamel_dump().encode()

    def dump(self) -> bytes:
        return self._source_text.splice(self._ruamel_dump).encode()


class YamlDocument(_YamlText):
    """One YAML document (a static pod manifest or a kubeconfig)."""

    def __init__(self, text: bytes, source: str, editable: bool = True) -> None:
        super().__init__(text, source, editable)
        if not isinstance(self._root, dict):
            raise KindfixError(f"{source} is not a YAML mapping",
                               hint="restore it from a backup or `kindfix rollback`")

    @property
    def data(self) -> Any:
        return self._root


class MultiYamlDocument(_YamlText):
    """A multi-document YAML file whose documents are selected by `[kind=X]`."""

    def _load(self, text: str) -> Any:
        return list(self._yaml.load_all(text))

    def _dump_root(self, out: io.StringIO) -> None:
        self._yaml.dump_all(self._root, out)

    @property
    def docs(self) -> list[Any]:
        return list(self._root)


_ENV_LINE = re.compile(r'^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<q>"?)(?P<value>.*)(?P=q)$')


class EnvFlagDocument:
    """kubeadm-flags.env: `NAME="--flag=value --other=value"` lines (kubeadm writes one)."""

    def __init__(self, text: bytes, source: str) -> None:
        self._lines = _decode(text, source, "a kubelet flags file").split("\n")
        self._source = source
        # every assignment must split like the shell the kubelet's unit sources it with
        for line in self._lines:
            m = _ENV_LINE.match(line)
            if m:
                self._split(m, line)

    def _split(self, m: re.Match[str], line: str) -> list[str]:
        try:
            return shlex.split(m.group("value"))
        except ValueError as e:  # an unbalanced quote
            raise KindfixError(f"{self._source} is not a kubelet flags file: {e} in "
                               f"{line[:80]!r}", hint=_RESTORE_HINT) from None

    def find(self, path: str) -> list[Ref]:
        segments = parse_path(path)
        if len(segments) != 2 or segments[1].field != "flag":
            raise ValueError(f"env-flag path must be NAME[flag=--x], got {path!r}")
        name, flag = segments[0].key, str(segments[1].value)
        refs = []
        for lineno, line in enumerate(self._lines):
            m = _ENV_LINE.match(line)
            if not m or m.group("name") != name:
                continue
            args = self._split(m, line)
            for i, arg in enumerate(args):
                if arg.startswith(flag + "="):
                    refs.append(self._ref(lineno, i, flag))
        return refs

    def _ref(self, lineno: int, index: int, flag: str) -> Ref:
        def parts() -> tuple[re.Match[str], list[str]]:
            m = _ENV_LINE.match(self._lines[lineno])
            assert m is not None
            return m, self._split(m, self._lines[lineno])

        def getter() -> str:
            return parts()[1][index][len(flag) + 1:]

        def setter(v: str) -> None:
            m, args = parts()
            args[index] = f"{flag}={v}"
            self._lines[lineno] = f'{m.group("name")}={m.group("q")}{" ".join(args)}{m.group("q")}'

        return Ref(getter, setter)

    def dump(self) -> bytes:
        return "\n".join(self._lines).encode()


class TextDocument:
    """A file that is one value, such as /kind/old-ipv4 (kind writes it without a newline)."""

    def __init__(self, text: bytes, source: str) -> None:
        self._text = _decode(text, source, "text")

    def find(self, path: str) -> list[Ref]:
        stripped = self._text.strip()
        if not stripped:
            return []

        def setter(v: str) -> None:
            self._text = self._text.replace(stripped, v, 1)

        return [Ref(self._stripped, setter)]

    def _stripped(self) -> str:
        return self._text.strip()

    def dump(self) -> bytes:
        return self._text.encode()


PARSERS: dict[str, Callable[[bytes, str], Document]] = {
    "yaml": YamlDocument,
    "yaml-multi": MultiYamlDocument,
    "env-flag": EnvFlagDocument,
    "text": TextDocument,
}


def parse_document(fmt: str, text: bytes, source: str, editable: bool = True) -> Document:
    try:
        parser = PARSERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}") from None
    if not editable and fmt in ("yaml", "yaml-multi"):
        return _parse_read_only(fmt, text, source)
    return parser(text, source)


@functools.lru_cache(maxsize=512)
def _parse_read_only(fmt: str, text: bytes, source: str) -> Document:
    """Read-only documents refuse changes (their refs raise), so one parse serves audit and the
    plan's first look (pure-Python YAML costs ~25 ms per manifest on the test machine)."""
    return PARSERS[fmt](text, source, False)  # type: ignore[call-arg]
