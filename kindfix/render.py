"""Turns core results (plain dataclasses) into tables, JSON or YAML. The core never prints."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML

# What must not reach a terminal raw: C0 and C1 control characters (ESC starts the escape
# sequences that recolour, retitle or rewrite a terminal; CR overwrites a line) and the Unicode
# bidi controls that reorder what is shown ("Trojan Source", CVE-2021-42574). Node files,
# container output and names carry them as data; text output shows them escaped (\x1b).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_IN_LINE = re.compile(_UNSAFE.pattern.replace("[", "[\n", 1))


def _escaped(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def clean(text: str) -> str:
    """Text safe to print: control characters escaped; newlines and tabs kept."""
    return _UNSAFE.sub(_escaped, text)


def clean_line(text: str) -> str:
    """One line safe to print: as `clean`, and a newline is escaped too (a one-line error
    stays one line, a table cell one row)."""
    return _UNSAFE_IN_LINE.sub(_escaped, text)


def to_data(obj: Any) -> Any:
    """Dataclasses, mappings and tuples to plain JSON-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        hidden = getattr(obj, "__render_exclude__", ())
        out = {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)
               if f.name not in hidden}
        for name in getattr(obj, "__render_properties__", ()):
            out[name] = to_data(getattr(obj, name))
        return out
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.decode(errors="replace")
    return str(obj) if isinstance(obj, str) else obj  # a StrEnum member: YAML needs its value


def as_json(obj: Any) -> str:
    return json.dumps(to_data(obj), indent=2)


def as_yaml(obj: Any) -> str:
    y = YAML(typ="safe")
    y.default_flow_style = False
    y.allow_unicode = False  # escapes every non-ASCII character, bidi controls included
    out = io.StringIO()
    y.dump(to_data(obj), out)
    return out.getvalue()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], max_width: int = 60) -> str:
    """A plain aligned table; overlong cells are shortened in the middle."""
    def cut(cell: str) -> str:
        return cell if len(cell) <= max_width else cell[: max_width // 2 - 2] + "..." + cell[
            -(max_width // 2 - 1):]

    cells = [[cut(clean_line(str(c))) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(clean_line(h).upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)
