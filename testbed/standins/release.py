"""The Kubernetes release the stand-ins claim to be.

Copies k8s.io/apimachinery/pkg/version.Info as `kubeadm version -o json` and the apiserver's
/version print it (fields in upstream order). Limits: one release; the build facts are made up.
"""

from __future__ import annotations

GIT_VERSION = "v1.29.2"
INFO = {
    "major": "1",
    "minor": "29",
    "gitVersion": GIT_VERSION,
    "gitCommit": "kindbed",
    "gitTreeState": "clean",
    "buildDate": "2024-02-14T10:32:40Z",
    "goVersion": "go1.21.7",
    "compiler": "gc",
    "platform": "linux/amd64",
}
