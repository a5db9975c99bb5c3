"""Stand-in for kubeadm v1.29.2, certificate phases and version only.

Copies: `kubeadm init phase certs <ca|apiserver|apiserver-kubelet-client|front-proxy-ca|
front-proxy-client|etcd-ca|etcd-server|etcd-peer|etcd-healthcheck-client|apiserver-etcd-client|
sa|all> [--config FILE] [--cert-dir DIR]` and `kubeadm join phase control-plane-prepare certs
[--config FILE]` with kubeadm's SAN rules, messages and "error execution phase ..." failures
(exit 1); see kubeadm_certs.py for the keep/refuse rules. Without --config the flags
--apiserver-advertise-address, --apiserver-cert-extra-sans, --control-plane-endpoint,
--service-cidr, --service-dns-domain apply (mixing them with --config is refused, as upstream).
`kubeadm version [-o short|json|yaml]`.
Limits: no other commands; --v, --dry-run, --kubernetes-version are accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sys

from . import kubeadm_certs, release
from .kubeadm_config import ConfigError, KubeadmConfig, default_address, parse
from .paths import node_path

VERSION = release.GIT_VERSION
OVERRIDES = {
    "--apiserver-advertise-address": "advertise_address",
    "--control-plane-endpoint": "control_plane_endpoint",
    "--service-cidr": "service_subnet",
    "--service-dns-domain": "dns_domain",
    "--apiserver-cert-extra-sans": "cert_sans",
}
IGNORED_VALUE = {"--v", "-v", "--kubernetes-version", "--rootfs"}
IGNORED_BOOL = {"--dry-run"}


class Usage(Exception):
    pass


def parse_flags(args: list[str]) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            name, eq, val = a.partition("=")
            if name in IGNORED_BOOL:
                i += 1
                continue
            if not eq:
                i += 1
                if i >= len(args):
                    raise Usage(f"flag needs an argument: {name}")
                val = args[i]
            if name not in IGNORED_VALUE:
                flags[name] = val
        else:
            positional.append(a)
        i += 1
    return flags, positional


def load_config(flags: dict[str, str]) -> KubeadmConfig:
    path = flags.get("--config")
    if path:
        mixed = [f for f in OVERRIDES if f in flags]
        if mixed:
            raise Usage(f"can not mix '--config' with arguments {mixed}")
        try:
            text = node_path(path).read_text()
        except OSError as e:
            raise ConfigError(f"unable to read config from {path!r} : {e}") from None
        return parse(text)
    cfg = KubeadmConfig(node_name=socket.gethostname().lower(), advertise_address=default_address())
    for flag, field in OVERRIDES.items():
        if flag in flags:
            value: object = tuple(flags[flag].split(",")) if field == "cert_sans" else flags[flag]
            cfg = dataclasses.replace(cfg, **{field: value})
    return cfg


def version(flags: dict[str, str]) -> int:
    fmt = flags.get("-o") or flags.get("--output") or ""
    info = release.INFO
    if fmt == "short":
        print(VERSION)
    elif fmt == "json":
        print(json.dumps({"clientVersion": info}, indent=2))
    elif fmt == "yaml":
        print("clientVersion:\n" + "".join(f"  {k}: {v}\n" for k, v in info.items()), end="")
    else:
        fields = ", ".join(f'{k[0].upper() + k[1:]}:"{v}"' for k, v in info.items())
        print(f"kubeadm version: &version.Info{{{fields}}}")
    return 0


def main(argv: list[str]) -> int:
    try:
        flags, pos = parse_flags(argv)
        if pos[:1] == ["version"]:
            return version(flags)
        if (
            pos[:3] == ["init", "phase", "certs"]
            and len(pos) == 4
            and pos[3] in kubeadm_certs.PHASES
        ):
            phase = f"certs/{pos[3]}"
            run = lambda cfg, d: kubeadm_certs.init_phase(d, pos[3], cfg)  # noqa: E731
        elif pos == ["join", "phase", "control-plane-prepare", "certs"]:
            phase = "control-plane-prepare/certs"
            run = lambda cfg, d: kubeadm_certs.join_prepare(d, cfg)  # noqa: E731
        else:
            raise Usage(
                f"unknown or unsupported command {' '.join(pos)!r} (kindbed kubeadm stand-in: "
                f"init phase certs <{'|'.join(kubeadm_certs.PHASES)}>, join phase "
                "control-plane-prepare certs, version)"
            )
        cfg = load_config(flags)
        cert_dir = node_path(flags.get("--cert-dir", "/etc/kubernetes/pki"))
        try:
            run(cfg, cert_dir)
        except (kubeadm_certs.PhaseError, ConfigError, OSError) as e:
            print(
                f"error execution phase {phase}: {e}\n"
                "To see the stack trace of this error execute with --v=5 or higher",
                file=sys.stderr,
            )
            return 1
        return 0
    except (Usage, ConfigError) as e:
        print(
            f"{e}\nTo see the stack trace of this error execute with --v=5 or higher",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
