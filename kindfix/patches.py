"""Loads patches/addresses.yaml: where every address lives, as data (one source of truth).

Audit reads and compares these locations; repair rewrites the same ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from kindfix.yamlpath import parse_path

PATCHES_DIR = Path(__file__).resolve().parent / "patches"

CONTROL_PLANE = "control-plane"
WORKER = "worker"
LOAD_BALANCER = "external-load-balancer"


@dataclass(frozen=True)
class Location:
    id: str
    component: str
    file: str
    path: str = ""  # empty for `text` files: the whole value
    format: str = "yaml"
    roles: tuple[str, ...] = (CONTROL_PLANE,)
    expect: str = "node-ip"  # node-ip | members | endpoint
    repair: str = "node-ip"  # node-ip | loopback | members
    family: int | None = None  # text files: which address family the value is
    # kind/kubeadm always write it for this role: not finding it is reported (status unknown),
    # never passed over. `one_of` names a requirement several locations share (the same value in
    # different kubeadm API versions): one of them must be found.
    required: bool = False
    one_of: str = ""

    @property
    def requirement(self) -> str | None:
        """What finding this location satisfies, or None when it is optional."""
        if self.one_of:
            return self.one_of
        return self.id if self.required else None


@dataclass(frozen=True)
class CertificateSpec:
    id: str
    component: str
    file: str
    phase: str  # kubeadm init phase certs <phase>
    roles: tuple[str, ...] = (CONTROL_PLANE,)


@dataclass(frozen=True)
class Generation:
    name: str
    markers: tuple[str, ...]


@dataclass(frozen=True)
class Patches:
    files: dict[str, tuple[str, ...]]
    locations: tuple[Location, ...]
    certificates: tuple[CertificateSpec, ...]
    generations: tuple[Generation, ...]

    def files_for(self, role: str) -> tuple[str, ...]:
        return self.files.get(role, ())

    def locations_for(self, role: str) -> tuple[Location, ...]:
        return tuple(loc for loc in self.locations if role in loc.roles)

    def requirements_for(self, role: str) -> dict[str, tuple[Location, ...]]:
        """Each requirement of the role and the locations that can satisfy it."""
        out: dict[str, tuple[Location, ...]] = {}
        for loc in self.locations_for(role):
            if loc.requirement is not None:
                out[loc.requirement] = (*out.get(loc.requirement, ()), loc)
        return out

    def certificates_for(self, role: str) -> tuple[CertificateSpec, ...]:
        return tuple(c for c in self.certificates if role in c.roles)

    def generation(self, entrypoint: bytes | None) -> str:
        """Which kind node image generation an entrypoint script belongs to."""
        if entrypoint is None:
            return "unknown"
        text = entrypoint.decode(errors="replace")
        for gen in self.generations:
            if all(marker in text for marker in gen.markers):
                return gen.name
        return "unknown"


def _tuple(raw: dict[str, Any], key: str) -> dict[str, Any]:
    if key in raw:
        return {key: tuple(raw[key])}
    return {}


def parse_patches(raw: dict[str, Any]) -> Patches:
    locations = []
    for item in raw["locations"]:
        fields = {k: v for k, v in item.items() if k != "roles"}
        loc = Location(**fields, **_tuple(item, "roles"))
        parse_path(loc.path)  # fail early on a typo in the data
        locations.append(loc)
    certificates = tuple(
        CertificateSpec(**{k: v for k, v in c.items() if k != "roles"}, **_tuple(c, "roles"))
        for c in raw.get("certificates", [])
    )
    generations = tuple(
        Generation(name=str(g["name"]), markers=tuple(g["markers"]))
        for g in raw.get("generations", [])
    )
    files = {role: tuple(paths) for role, paths in raw["files"].items()}
    return Patches(files, tuple(locations), certificates, generations)


@functools.lru_cache(maxsize=4)
def load_patches(directory: Path = PATCHES_DIR) -> Patches:
    raw = YAML(typ="safe").load((directory / "addresses.yaml").read_text())
    return parse_patches(raw)
