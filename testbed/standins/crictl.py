"""Stand-in for crictl (cri-tools v1.29) talking to containerd, for the verbs kindfix uses.

Copies: `ps [-a] [--name REGEX] [--state S] [--pod ID] [--label k=v] [-q] [-o json|yaml|table]
[--no-trunc] [-l] [--last N]`, `stop [-t N] ID...`, `rm [-f] [-a] ID...`,
`exec [-i] [-t] [-s] ID cmd...`, `logs [--tail N] [--since T] [-p] [-t] ID`, `inspect ID...`,
`pods [--name REGEX] [--state S] [-q] [-o json|table]`, `images [-q] [-o json|table]`:
flag names, table layout (tabwriter, 13-char ids, "x minutes ago"), JSON shape (camelCase,
int64 as strings, defaults emitted, newest first), ID prefixes resolved like containerd's
truncindex, FATA lines and exit code 1 on errors. `stop` with the default timeout 0 SIGKILLs
as containerd does; the kubelet then restarts the container (attempt+1).
`exec` runs cmd in the container's environment (image bin first on PATH, its env, cwd /),
passes stdin only with -i and returns cmd's exit code.
Limits: no -f/--follow on logs, inspect/pods carry a subset of fields, global flags
(-r, --image-endpoint, --timeout, -D, -c) are accepted and ignored; no namespaces/cgroups.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import signal
import sys
from typing import Any

import yaml

from . import state
from .kubelet import stop_container
from .paths import image_ref_of_dir, images_dir, node_path

GLOBAL_VALUE_FLAGS = {
    "-r",
    "--runtime-endpoint",
    "-i",
    "--image-endpoint",
    "--timeout",
    "-t",
    "-c",
    "--config",
}
GLOBAL_BOOL_FLAGS = {"-D", "--debug"}


class Fatal(Exception):
    pass


def human_duration(seconds: float) -> str:  # noqa: PLR0911 - go-units' table, as written
    """go-units HumanDuration, as crictl prints CREATED."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    return f"{h // 24} days"


def ago(ns: int) -> str:
    return human_duration(state.now_ns() / 1e9 - ns / 1e9) + " ago"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """text/tabwriter with minwidth 20, padding 3, as crictl configures it."""
    widths = [max(20, *(len(r[i]) + 3 for r in [headers, *rows])) for i in range(len(headers))]
    out = []
    for r in [headers, *rows]:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.append("".join(cells))
    return "\n".join(out) + "\n"


def trunc(i: str, no_trunc: bool = False) -> str:
    i = i.removeprefix("sha256:")
    return i if no_trunc else i[:13]


def parse_flags(
    args: list[str], value_flags: set[str], bool_flags: set[str]
) -> tuple[dict[str, Any], list[str]]:
    """urfave/cli style: flags first (--x=v, --x v, -x v); the first positional ends them."""
    opts: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return opts, args[i + 1 :]
        if not a.startswith("-") or a == "-":
            return opts, args[i:]
        name, eq, val = a.partition("=")
        if name in value_flags:
            if not eq:
                i += 1
                if i >= len(args):
                    raise Fatal(f"flag needs an argument: {name}")
                val = args[i]
            opts.setdefault(name, []).append(val)
        elif name in bool_flags:
            opts[name] = val.lower() != "false" if eq else True
        elif len(a) > 2 and a[1] != "-" and all(f"-{ch}" in bool_flags for ch in a[1:]):
            for ch in a[1:]:  # combined short flags: -it
                opts[f"-{ch}"] = True
        else:
            raise Fatal(f"flag provided but not defined: {name}")
        i += 1
    return opts, []


def opt(opts: dict[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if n in opts:
            v = opts[n]
            return v[-1] if isinstance(v, list) else v
    return default


def resolve_container(prefix: str, verb: str) -> state.Container:
    containers = state.load_containers()
    try:
        cid = state.resolve(prefix, [c.id for c in containers])
    except state.AmbiguousError:
        raise Fatal(
            f'{verb} container "{prefix}": rpc error: code = Unknown desc = '
            f"multiple IDs found with provided prefix: {prefix}"
        ) from None
    except state.NotFoundError:
        raise Fatal(
            f'{verb} container "{prefix}": rpc error: code = NotFound desc = an error '
            f'occurred when try to find container "{prefix}": not found'
        ) from None
    return next(c for c in containers if c.id == cid)


def pods_by_id() -> dict[str, dict[str, Any]]:
    return {str(p["id"]): p for p in state.load_pods()}


def container_json(c: state.Container) -> dict[str, Any]:
    cfg = c.config
    return {
        "id": c.id,
        "podSandboxId": c.pod_id,
        "metadata": {"name": c.name, "attempt": c.attempt},
        "image": {
            "image": cfg["image"]["image"],
            "annotations": {},
            "userSpecifiedImage": "",
            "runtimeHandler": "",
        },
        "imageRef": cfg["imageRef"],
        "state": c.state,
        "createdAt": str(cfg["createdAt"]),
        "labels": cfg.get("labels", {}),
        "annotations": cfg.get("annotations", {}),
    }


def cmd_ps(args: list[str]) -> int:
    opts, rest = parse_flags(
        args,
        {
            "--name",
            "--state",
            "-s",
            "--pod",
            "-p",
            "--label",
            "-o",
            "--output",
            "--last",
            "-n",
            "--id",
            "--image",
        },
        {
            "-a",
            "--all",
            "-q",
            "--quiet",
            "--no-trunc",
            "-l",
            "--latest",
            "-v",
            "--verbose",
            "--resolve-image-path",
        },
    )
    if rest:
        raise Fatal(f"unexpected arguments: {' '.join(rest)}")
    cs = state.load_containers()
    want_state = opt(opts, "--state", "-s")
    if want_state:
        want = "CONTAINER_" + want_state.upper().removeprefix("CONTAINER_")
        cs = [c for c in cs if c.state == want]
    elif (
        not opt(opts, "-a", "--all")
        and not opt(opts, "-l", "--latest")
        and not opt(opts, "--last", "-n")
    ):
        cs = [c for c in cs if c.state == state.RUNNING]
    if opt(opts, "--name"):
        rx = re.compile(opt(opts, "--name"))
        cs = [c for c in cs if rx.search(c.name)]
    if opt(opts, "--id"):
        cs = [c for c in cs if c.id.startswith(opt(opts, "--id"))]
    if opt(opts, "--pod", "-p"):
        cs = [c for c in cs if c.pod_id.startswith(opt(opts, "--pod", "-p"))]
    for lbl in opts.get("--label", []):
        k, _, v = lbl.partition("=")
        cs = [c for c in cs if c.config.get("labels", {}).get(k) == v]
    cs.sort(key=lambda c: int(c.config["createdAt"]), reverse=True)
    if opt(opts, "-l", "--latest"):
        cs = cs[:1]
    if opt(opts, "--last", "-n"):
        cs = cs[: int(opt(opts, "--last", "-n"))]
    if opt(opts, "-q", "--quiet"):
        sys.stdout.write("".join(f"{c.id}\n" for c in cs))
        return 0
    fmt = opt(opts, "-o", "--output", default="table")
    if fmt in ("json", "yaml"):
        return emit({"containers": [container_json(c) for c in cs]}, fmt)
    if fmt != "table":
        raise Fatal(f"unsupported output format {fmt!r}")
    pods = pods_by_id()
    nt = bool(opt(opts, "--no-trunc"))
    rows = [
        [
            trunc(c.id, nt),
            trunc(c.config["imageRef"], nt),
            ago(int(c.config["createdAt"])),
            c.state.removeprefix("CONTAINER_").title(),
            c.name,
            str(c.attempt),
            trunc(c.pod_id, nt),
            pods.get(c.pod_id, {}).get("metadata", {}).get("name", "unknown"),
        ]
        for c in cs
    ]
    sys.stdout.write(
        table(["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"], rows)
    )
    return 0


def emit(obj: Any, fmt: str) -> int:
    if fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(obj, sort_keys=False))
    else:
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    return 0


def cmd_stop(args: list[str]) -> int:
    opts, ids = parse_flags(args, {"-t", "--timeout"}, set())
    if not ids:
        raise Fatal("ID cannot be empty")
    timeout = float(opt(opts, "-t", "--timeout", default="0"))
    for i in ids:
        c = resolve_container(i, "stopping the")
        stop_container(c, timeout)
        print(i)
    return 0


def cmd_rm(args: list[str]) -> int:
    opts, ids = parse_flags(args, set(), {"-f", "--force", "-a", "--all"})
    if opt(opts, "-a", "--all"):
        ids = [c.id for c in state.load_containers()]
    if not ids:
        raise Fatal("ID cannot be empty")
    for i in ids:
        c = resolve_container(i, "removing")
        if c.state == state.RUNNING:
            if not opt(opts, "-f", "--force"):
                raise Fatal(
                    f'removing container "{i}": rpc error: code = Unknown desc = failed to '
                    f'remove container "{c.id}": container is in CONTAINER_RUNNING state, '
                    "please stop it first"
                )
            stop_container(c, 0)
        state.remove_container(c.id)
        print(i)
    return 0


def cmd_exec(args: list[str]) -> int:
    opts, rest = parse_flags(
        args, {"--timeout"}, {"-i", "--interactive", "-t", "--tty", "-s", "--sync", "-q", "--quiet"}
    )
    if len(rest) < 2:
        raise Fatal("ID and command cannot be empty" if not rest else "command cannot be empty")
    c = resolve_container(rest[0], "execing command in")
    if c.state != state.RUNNING:
        raise Fatal(
            f"execing command in container: rpc error: code = Unknown desc = container "
            f"is in {c.state} state"
        )
    env = dict(c.config["env"])
    exe = shutil.which(rest[1], path=env.get("PATH")) if "/" not in rest[1] else rest[1]
    if not exe:
        sys.stderr.write(
            f"OCI runtime exec failed: exec failed: unable to start container process: "
            f'exec: "{rest[1]}": executable file not found in $PATH: unknown\n'
        )
        return 126
    if not opt(opts, "-i", "--interactive"):
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
    os.chdir(c.config.get("workingDir") or "/")
    os.execve(exe, [rest[1], *rest[2:]], env)  # noqa: S606 - exec into the container is the point
    return 127  # not reached


def _log_lines(path: str) -> list[tuple[str, str, str, bool]]:
    try:
        raw = node_path(path).read_text(errors="replace")
    except OSError:
        return []
    out = []
    for ln in raw.splitlines():
        ts, _, rest = ln.partition(" ")
        stream, _, rest = rest.partition(" ")
        tag, _, text = rest.partition(" ")
        out.append((ts, stream, text, tag == "F"))
    return out


_UNITS = {"s": 1, "m": 60, "h": 3600}


def _since(value: str) -> str:
    """crictl --since: a relative duration (42s, 5m, 1h) or an RFC 3339 time, as the RFC 3339
    UTC text the log lines start with (comparable as strings)."""
    if value[-1:] in _UNITS and value[:-1].replace(".", "", 1).isdigit():
        t = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(
            seconds=float(value[:-1]) * _UNITS[value[-1]]
        )
    else:
        try:
            t = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Fatal(f'failed to parse time "{value}"') from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def cmd_logs(args: list[str]) -> int:
    opts, rest = parse_flags(
        args, {"--tail", "--since"}, {"-p", "--previous", "-t", "--timestamps", "-f", "--follow"}
    )
    if len(rest) != 1:
        raise Fatal("ID cannot be empty" if not rest else "only one ID is allowed")
    if opt(opts, "-f", "--follow"):
        raise Fatal("--follow is not supported by the kindbed crictl stand-in")
    c = resolve_container(rest[0], "getting the logs of")
    path = str(c.config["logPath"])
    if opt(opts, "-p", "--previous"):
        path = path.rsplit("/", 1)[0] + f"/{max(c.attempt - 1, 0)}.log"
    lines = _log_lines(path)
    since = opt(opts, "--since", default="")
    if since:
        cutoff = _since(since)
        lines = [ln for ln in lines if ln[0] >= cutoff]
    tail = int(opt(opts, "--tail", default="-1"))
    if tail >= 0:
        lines = lines[-tail:] if tail else []
    for ts, stream, text, full in lines:
        out = sys.stderr if stream == "stderr" else sys.stdout
        out.write(
            (f"{ts} " if opt(opts, "-t", "--timestamps") else "") + text + ("\n" if full else "")
        )
    sys.stdout.flush()
    return 0


def cmd_inspect(args: list[str]) -> int:
    opts, ids = parse_flags(args, {"-o", "--output"}, set())
    if not ids:
        raise Fatal("ID cannot be empty")
    for i in ids:
        c = resolve_container(i, "getting the status of the")
        st = c.status
        ref = str(c.config.get("imageName", ""))
        status = {
            **container_json(c),
            "startedAt": str(st.get("startedAt", 0)),
            "finishedAt": str(st.get("finishedAt", 0)),
            "exitCode": st.get("exitCode", 0),
            "reason": st.get("reason", ""),
            "message": st.get("message", ""),
            "logPath": c.config["logPath"],
            "mounts": [],
        }
        status["image"]["image"] = ref
        status["imageRef"] = f"{ref.rsplit(':', 1)[0]}@{c.config['imageRef']}"
        emit(
            {
                "status": status,
                "info": {
                    "pid": c.pid,
                    "config": {
                        "args": c.config["argv"],
                        "envs": [{"key": k, "value": v} for k, v in c.config["env"].items()],
                    },
                },
            },
            opt(opts, "-o", "--output", default="json"),
        )
    return 0


def cmd_pods(args: list[str]) -> int:
    opts, _rest = parse_flags(
        args,
        {"--name", "--state", "-s", "--namespace", "-o", "--output", "--label", "--id"},
        {"-q", "--quiet", "--no-trunc", "-l", "--latest", "-v", "--verbose"},
    )
    pods = sorted(state.load_pods(), key=lambda p: int(p["createdAt"]), reverse=True)
    if opt(opts, "--name"):
        rx = re.compile(opt(opts, "--name"))
        pods = [p for p in pods if rx.search(p["metadata"]["name"])]
    if opt(opts, "--namespace"):
        pods = [p for p in pods if p["metadata"]["namespace"] == opt(opts, "--namespace")]
    if opt(opts, "--state", "-s"):
        want = "SANDBOX_" + opt(opts, "--state", "-s").upper().removeprefix("SANDBOX_")
        pods = [p for p in pods if p["state"] == want]
    if opt(opts, "-q", "--quiet"):
        sys.stdout.write("".join(f"{p['id']}\n" for p in pods))
        return 0
    fmt = opt(opts, "-o", "--output", default="table")
    if fmt in ("json", "yaml"):
        keep = ("id", "metadata", "state", "createdAt", "labels", "annotations", "runtimeHandler")
        return emit(
            {"items": [{k: (str(p[k]) if k == "createdAt" else p[k]) for k in keep} for p in pods]},
            fmt,
        )
    nt = bool(opt(opts, "--no-trunc"))
    rows = [
        [
            trunc(p["id"], nt),
            ago(int(p["createdAt"])),
            p["state"].removeprefix("SANDBOX_").title().replace("Notready", "NotReady"),
            p["metadata"]["name"],
            p["metadata"]["namespace"],
            str(p["metadata"]["attempt"]),
            "(default)",
        ]
        for p in pods
    ]
    sys.stdout.write(
        table(["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"], rows)
    )
    return 0


def cmd_images(args: list[str]) -> int:
    opts, _ = parse_flags(
        args, {"-o", "--output"}, {"-q", "--quiet", "--no-trunc", "--digests", "-v"}
    )
    d = images_dir()
    refs = sorted(image_ref_of_dir(p) for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
    if opt(opts, "-q", "--quiet"):
        sys.stdout.write("".join(f"{state.image_id(r)}\n" for r in refs))
        return 0
    fmt = opt(opts, "-o", "--output", default="table")
    if fmt in ("json", "yaml"):
        return emit(
            {
                "images": [
                    {
                        "id": state.image_id(r),
                        "repoTags": [r],
                        "repoDigests": [],
                        "size": "0",
                        "uid": None,
                        "username": "",
                        "spec": None,
                        "pinned": False,
                    }
                    for r in refs
                ]
            },
            fmt,
        )
    rows = [
        [r.rsplit(":", 1)[0], r.rsplit(":", 1)[1], trunc(state.image_id(r)), "0B"] for r in refs
    ]
    sys.stdout.write(table(["IMAGE", "TAG", "IMAGE ID", "SIZE"], rows))
    return 0


VERBS = {
    "ps": cmd_ps,
    "stop": cmd_stop,
    "rm": cmd_rm,
    "exec": cmd_exec,
    "logs": cmd_logs,
    "inspect": cmd_inspect,
    "pods": cmd_pods,
    "images": cmd_images,
    "img": cmd_images,
}


def main(argv: list[str]) -> int:
    try:
        _, rest = parse_flags(argv, GLOBAL_VALUE_FLAGS, GLOBAL_BOOL_FLAGS)
        if not rest or rest[0] not in VERBS:
            raise Fatal(
                f"unknown command {rest[0]!r} (kindbed crictl stand-in supports: "
                f"{', '.join(sorted(VERBS))})"
                if rest
                else "no command given"
            )
        return VERBS[rest[0]](rest[1:])
    except Fatal as e:
        sys.stderr.write(f"FATA[0000] {e}\n")
        return 1


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `crictl ps | head` ends quietly
    sys.exit(main(sys.argv[1:]))
