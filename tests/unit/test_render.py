"""Rendering core results as JSON, YAML and tables (kindfix/render.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from ruamel.yaml import YAML

from kindfix.audit import audit
from kindfix.dump import load_dump
from kindfix.render import as_json, as_yaml, table, to_data
from tests.unit.helpers_nodes import DUMPS


@dataclass(frozen=True)
class Row:
    name: str
    ips: tuple[str, ...]
    raw: bytes
    __render_properties__: ClassVar[tuple[str, ...]] = ("count",)

    @property
    def count(self) -> int:
        return len(self.ips)


def test_to_data_flattens_dataclasses_tuples_bytes_and_properties() -> None:
    data = to_data({"rows": (Row("cp", ("172.18.0.3", "fc00::3"), b"\xffok"),), 3: None})
    assert data == {"rows": [{"name": "cp", "ips": ["172.18.0.3", "fc00::3"],
                              "raw": "\ufffdok", "count": 2}], "3": None}


def test_json_and_yaml_of_a_real_audit_report_agree() -> None:
    report = audit(*load_dump(DUMPS / "ha-3cp-permuted"))
    from_json = json.loads(as_json(report))
    from_yaml = YAML(typ="safe").load(as_yaml(report))
    assert from_json == from_yaml
    assert len(from_json["findings"]) == len(report.findings)
    assert from_json["etcd"]["quorum"] is False
    assert {f["status"] for f in from_json["findings"]} >= {"stale"}


def test_table_aligns_columns_and_upper_cases_headers() -> None:
    out = table(["node", "status"], [["kind-control-plane", "ok"], ["w", "stale"]])
    assert out.splitlines() == ["NODE                STATUS",
                                "kind-control-plane  ok",
                                "w                   stale"]


def test_table_shortens_long_cells_in_the_middle() -> None:
    cell = "https://" + "a" * 100 + "/tail"
    [_, row] = table(["url"], [[cell]], max_width=40).splitlines()
    assert len(row) == 40
    assert row.startswith("https://aaaa")
    assert "..." in row
    assert row.endswith("a/tail")
