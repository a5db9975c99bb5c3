"""Stand-in for containerd's ctr, for running an image's tools on a node (`ctr -n k8s.io run`).

Copies: `ctr [-n|--namespace NS] run --rm --net-host [--mount type=bind,src=S,dst=D,options=
rbind:rw]... REF ID cmd...` runs cmd with the image's bin/ first on PATH (the way a real node
runs the etcd image's etcdctl/etcdutl while etcd itself is stopped), stdin/stdout/stderr passed
through, cmd's exit code returned; an unknown image fails with `ctr: image "REF": not found`, a
container ID in use with `ctr: container "ID": already exists` (without --rm the container
stays recorded until `ctr -n k8s.io containers rm ID`, as upstream), an unknown binary with
runc's "executable file not found in $PATH". `ctr -n k8s.io images ls [-q]` lists the images
(image dirs under /var/lib/kindbed/images); other namespaces have none.
Limits: no mount or network namespace: a bind mount with src == dst is a no-op (the node's
filesystem is visible anyway), any other mount is refused; without --net-host the command still
shares the node's network (a real one would have loopback only).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import state
from .paths import container_env_path, image_dir, image_ref_of_dir, images_dir, state_dir


class CtrError(Exception):
    pass


def _registry() -> Path:
    """Containers created by `ctr run` (removed with --rm), so a reused ID fails as upstream."""
    d = state_dir() / "ctr"
    d.mkdir(parents=True, exist_ok=True)
    return d


def parse_mount(spec: str) -> tuple[str, str]:
    fields = dict(kv.partition("=")[::2] for kv in spec.split(","))
    if fields.get("type", "bind") != "bind":
        raise CtrError(f"mount {spec!r}: only type=bind is supported by the kindbed ctr stand-in")
    src, dst = (
        fields.get("src") or fields.get("source"),
        fields.get("dst") or fields.get("destination"),
    )
    if not src or not dst:
        raise CtrError(f"mount {spec!r}: src and dst are required")
    return src, dst


def refs() -> list[str]:
    d = images_dir()
    return sorted(image_ref_of_dir(p) for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def run_flags(args: list[str]) -> tuple[bool, list[str], list[str]]:
    """`ctr run` flags: (--rm given, --mount values, the rest: REF ID cmd...)."""
    rm = False
    mounts: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name, eq, val = args[i].partition("=")
        if name in ("-d", "--detach"):
            raise CtrError("--detach is not supported by the kindbed ctr stand-in")
        if name == "--rm":
            rm = True
        elif name in ("--mount", "--env", "--cwd", "--label", "--user", "-u"):
            if not eq:
                i += 1
                val = args[i] if i < len(args) else ""
            if name == "--mount":
                mounts.append(val)
        elif name not in ("--net-host", "-t", "--tty", "--privileged"):
            raise CtrError(f"flag provided but not defined: {name}")
        i += 1
    return rm, mounts, args[i:]


def run(ns: str, args: list[str]) -> int:
    rm, mounts, rest = run_flags(args)
    if len(rest) < 2:
        raise CtrError("image ref and container id must be provided")
    ref, cid, cmd = rest[0], rest[1], rest[2:]
    if ns != "k8s.io" or not image_dir(ref).is_dir():
        raise CtrError(f'image "{ref}": not found')
    for m in mounts:
        src, dst = parse_mount(m)
        if os.path.normpath(src) != os.path.normpath(dst):
            raise CtrError(
                f"mount src={src},dst={dst}: the kindbed ctr stand-in has no mount namespace; "
                "only mounts with src == dst (no-ops) are supported"
            )
    if not cmd:
        raise CtrError("the kindbed ctr stand-in needs an explicit command (no image entrypoints)")
    record = _registry() / cid
    if record.exists():
        raise CtrError(f'container "{cid}": already exists')
    env = {"PATH": container_env_path(ref), "HOSTNAME": os.uname().nodename}
    if os.environ.get("KINDBED_ROOT"):
        env["KINDBED_ROOT"] = os.environ["KINDBED_ROOT"]
    exe = shutil.which(cmd[0], path=env["PATH"]) if "/" not in cmd[0] else cmd[0]
    if not exe:
        raise CtrError(
            f"failed to create shim task: OCI runtime create failed: runc create failed: unable to "
            f'start container process: exec: "{cmd[0]}": executable file not found in $PATH: unknown'  # noqa: E501 - upstream's message, kept greppable
        )
    record.write_text(json.dumps({"id": cid, "image": ref, "command": cmd}))
    try:
        return subprocess.call([exe, *cmd[1:]], env=env, cwd="/")
    finally:
        if rm:
            record.unlink(missing_ok=True)


def images(ns: str, args: list[str]) -> int:
    if not args or args[0] not in ("ls", "list"):
        raise CtrError("the kindbed ctr stand-in supports: images ls [-q]")
    found = refs() if ns == "k8s.io" else []
    if "-q" in args or "--quiet" in args:
        sys.stdout.write("".join(f"{r}\n" for r in found))
        return 0
    print("REF" + " " * 60 + "TYPE" + " " * 48 + "DIGEST SIZE PLATFORMS LABELS")
    for r in found:
        print(
            f"{r} application/vnd.oci.image.index.v1+json {state.image_id(r)} 0.0 B linux/amd64 "
            "io.cri-containerd.image=managed"
        )
    return 0


def containers(args: list[str]) -> int:
    reg = _registry()
    if args[:1] in (["ls"], ["list"]):
        if "-q" in args:
            sys.stdout.write("".join(f"{p.name}\n" for p in sorted(reg.iterdir())))
        else:
            print("CONTAINER    IMAGE    RUNTIME")
            for p in sorted(reg.iterdir()):
                print(
                    f"{p.name}    {json.loads(p.read_text()).get('image', '')}    io.containerd.runc.v2"  # noqa: E501 - ctr's columns
                )
        return 0
    if args[:1] in (["rm"], ["delete"], ["del"]):
        for cid in args[1:]:
            if not (reg / cid).exists():
                raise CtrError(f'failed to delete container "{cid}": container "{cid}": not found')
            (reg / cid).unlink()
        return 0
    raise CtrError("the kindbed ctr stand-in supports: containers ls|rm")


def main(argv: list[str]) -> int:
    ns = os.environ.get("CONTAINERD_NAMESPACE", "default")
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, val = argv[i].partition("=")
        if name in ("-n", "--namespace", "-a", "--address", "--timeout", "--connect-timeout"):
            if not eq:
                i += 1
                val = argv[i] if i < len(argv) else ""
            if name in ("-n", "--namespace"):
                ns = val
        elif name not in ("--debug",):
            print(f"ctr: flag provided but not defined: {name}", file=sys.stderr)
            return 1
        i += 1
    verb, rest = (argv[i], argv[i + 1 :]) if i < len(argv) else ("", [])
    try:
        if verb == "run":
            return run(ns, rest)
        if verb in ("images", "image", "i"):
            return images(ns, rest)
        if verb in ("containers", "container", "c"):
            return containers(rest)
        raise CtrError(
            f"unsupported command {verb!r} (kindbed ctr stand-in: run, images ls, containers ls|rm)"
        )
    except CtrError as e:
        print(f"ctr: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
