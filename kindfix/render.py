"""Turns core results (plain dataclasses) into tables, JSON or YAML. The core never prints."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML


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
    return obj


def as_json(obj: Any) -> str:
    return json.dumps(to_data(obj), indent=2)


def as_yaml(obj: Any) -> str:
    y = YAML(typ="safe")
    y.default_flow_style = False
    out = io.StringIO()
    y.dump(to_data(obj), out)
    return out.getvalue()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], max_width: int = 60) -> str:
    """A plain aligned table; overlong cells are shortened in the middle."""
    def cut(cell: str) -> str:
        return cell if len(cell) <= max_width else cell[: max_width // 2 - 2] + "..." + cell[
            -(max_width // 2 - 1):]

    cells = [[cut(str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)
