"""Loads patches/addresses.yaml: where every address lives, as data (one source of truth).

Audit reads and compares these locations; repair rewrites the same ones and restarts what the
data says reads them (`restart`), so a new location is a data change only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from kindfix.yamlpath import parse_path

PATCHES_DIR = Path(__file__).resolve().parent / "patches"

CONTROL_PLANE = "control-plane"
WORKER = "worker"
LOAD_BALANCER = "external-load-balancer"

# what must restart when a location changes (the header of addresses.yaml says what each means)
NO_RESTART = "none"
KUBELET = "kubelet"
POD_PREFIX = "pod/"
_RESTART = re.compile(r"none|kubelet|pod/[a-z0-9]([-a-z0-9]*[a-z0-9])?")


# what a location must hold (`expect`) and how repair makes it so (`repair`)
EXPECTS = ("node-ip", "members", "endpoint")
ENDPOINT = "endpoint"
LOCAL_ENDPOINT = "local-endpoint"
REPAIRS = ("node-ip", "loopback", "members", ENDPOINT, LOCAL_ENDPOINT)


def restart_pod(rule: str) -> str | None:
    """The static pod (container name) a `pod/NAME` restart rule names, else None."""
    return rule[len(POD_PREFIX):] if rule.startswith(POD_PREFIX) else None


@dataclass(frozen=True)
class Location:
    id: str
    component: str
    file: str
    path: str = ""  # empty for `text` files: the whole value
    format: str = "yaml"
    roles: tuple[str, ...] = (CONTROL_PLANE,)
    expect: str = "node-ip"  # node-ip | members | endpoint
    repair: str = "node-ip"  # node-ip | loopback | members | endpoint | local-endpoint
    family: int | None = None  # text files: which address family the value is
    # kind/kubeadm always write it for this role: not finding it is reported (status unknown),
    # never passed over. `one_of` names a requirement several locations share (the same value in
    # different kubeadm API versions): one of them must be found.
    required: bool = False
    one_of: str = ""
    restart: str = NO_RESTART  # none | kubelet | pod/NAME; the data file must say it

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
    restart: str = NO_RESTART


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

    def restarts_for(self, path: str) -> tuple[str, ...]:
        """What must restart when the file at `path` changes: the rules of every location and
        certificate in it (whatever the role), in data order, without `none`."""
        rules = [loc.restart for loc in self.locations if loc.file == path]
        rules += [c.restart for c in self.certificates if c.file == path]
        return tuple(r for r in dict.fromkeys(rules) if r != NO_RESTART)

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


def _check_restart(item: dict[str, Any], what: str) -> None:
    """Every location says what restarts when it changes: one left out would be rewritten with
    nothing to make its reader see the new value (issue #12)."""
    name = f"{what} {item.get('id', '?')!r}"
    if "restart" not in item:
        raise ValueError(f"{name} has no `restart` (none, kubelet or pod/NAME: what must "
                         "restart for its reader to see a change)")
    if not isinstance(item["restart"], str) or not _RESTART.fullmatch(item["restart"]):
        raise ValueError(f"{name}: bad restart {item['restart']!r} (none, kubelet or pod/NAME)")


def parse_patches(raw: dict[str, Any]) -> Patches:
    locations = []
    for item in raw["locations"]:
        _check_restart(item, "location")
        for key, allowed in (("expect", EXPECTS), ("repair", REPAIRS)):
            if item.get(key, allowed[0]) not in allowed:
                raise ValueError(f"location {item.get('id', '?')!r}: bad {key} {item[key]!r} "
                                 f"(one of {', '.join(allowed)})")
        fields = {k: v for k, v in item.items() if k != "roles"}
        loc = Location(**fields, **_tuple(item, "roles"))
        parse_path(loc.path)  # fail early on a typo in the data
        locations.append(loc)
    certificates = []
    for c in raw.get("certificates", []):
        _check_restart(c, "certificate")
        fields = {k: v for k, v in c.items() if k != "roles"}
        certificates.append(CertificateSpec(**fields, **_tuple(c, "roles")))
    generations = tuple(
        Generation(name=str(g["name"]), markers=tuple(g["markers"]))
        for g in raw.get("generations", [])
    )
    files = {role: tuple(paths) for role, paths in raw["files"].items()}
    return Patches(files, tuple(locations), tuple(certificates), generations)


@functools.lru_cache(maxsize=4)
def load_patches(directory: Path = PATCHES_DIR) -> Patches:
    raw = YAML(typ="safe").load((directory / "addresses.yaml").read_text())
    return parse_patches(raw)
