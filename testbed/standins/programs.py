"""Which stand-in module runs for which program name (the node's wrappers are symlinks to one
launcher, /usr/local/bin/kindbed-standin, which dispatches on the name it was invoked as)."""

from __future__ import annotations

import importlib
import os
import signal

PROGRAMS = {
    "kubelet": "kubelet",
    "crictl": "crictl",
    "ctr": "ctr",
    "kubeadm": "kubeadm",
    "systemctl": "systemctl",
    "kube-apiserver": "apiserver",
    "kube-controller-manager": "controlplane",
    "kube-scheduler": "controlplane",
    "kindbed-init": "init",
}


def main(argv: list[str]) -> int:
    name = os.path.basename(argv[0])
    if name not in PROGRAMS:
        print(f"kindbed-standin: unknown program {name!r}; one of {', '.join(sorted(PROGRAMS))}")
        return 127
    # Like Go programs, die quietly when the reader of stdout goes away (`crictl ps | head`).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    module = importlib.import_module(f".{PROGRAMS[name]}", __package__)
    if PROGRAMS[name] == "controlplane":
        return int(module.main(name, argv[1:]))
    return int(module.main(argv[1:]))
