"""Cluster names, checked as kind checks them before anything uses one.

A name reaches container label filters, node paths and messages; one that kind itself would
refuse (`../x`, a newline, an escape sequence) is refused here with one line, never used.
"""

from __future__ import annotations

import re

from kindfix.errors import KindfixError

# kind's own rule, kubernetes-sigs/kind pkg/internal/apis/config/validate.go:
#   var validNameRE = regexp.MustCompile(`^[a-z0-9.-]+$`)
# checked by Cluster.Validate() on `kind create cluster`, so every cluster kind made matches it.
# (kind only warns above 50 characters, pkg/cluster/internal/create/create.go clusterNameMax:
# a longer name is a real kind cluster, so it is accepted here too.)
KIND_NAME_PATTERN = "^[a-z0-9.-]+$"
_KIND_NAME = re.compile(r"[a-z0-9.-]+")


def validate_cluster_name(name: str) -> str:
    """`name` when kind would accept it as a cluster name; otherwise one KindfixError."""
    if not _KIND_NAME.fullmatch(name):
        # !a: the bad name may hold control characters; show them escaped, never raw
        raise KindfixError(
            f"{name!a} is not a valid kind cluster name: kind cluster names must match "
            f"`{KIND_NAME_PATTERN}`",
            hint="see `kindfix clusters` for the clusters on this engine")
    return name
