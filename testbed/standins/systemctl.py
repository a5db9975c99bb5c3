"""Stand-in for systemctl, for the kubelet unit only (what kindfix does to a kind node).

Copies: `systemctl start|stop|restart kubelet[.service]` (waits until the unit is
active/inactive, like a synchronous systemctl), `is-active` (prints the state; exit 0 when
active, 3 otherwise), `status` (systemd's layout, last log lines; exit 0 active, 3 inactive),
`daemon-reload`, `enable`, `is-enabled` (no-ops / "enabled"). Unknown units: "Unit X.service
could not be found." (exit 5; is-active prints "inactive", exit 3). Without a running
kindbed-init, EVERY verb (is-active, status and is-enabled too; systemd 252's
bus_connect_transport_systemd checks sd_booted() before any call): "System has not been booted
with systemd as init system (PID 1). Can't operate." and "Failed to connect to bus: Host is down",
exit 1 - what a kind node answers while its entrypoint is still PID 1.
Limits: one unit; no journal, dependencies, timers.
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import sys
import time

from . import state, unit
from .paths import node_path

WAIT = 15.0


def init_pid() -> int:
    try:
        pid = int(unit.init_pid_file().read_text().strip())
    except (OSError, ValueError):
        return 0
    return pid if state.pid_alive(pid) else 0


def no_systemd() -> int:
    print(
        "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
        "Failed to connect to bus: Host is down",
        file=sys.stderr,
    )
    return 1


def unit_name(arg: str) -> str | None:
    name = arg.removesuffix(".service")
    return name if name == unit.UNIT else None


def current_state() -> str:
    if not init_pid():
        return "inactive"
    st = unit.read_status()
    if st.get("state") == "active" and not state.pid_alive(int(st.get("pid", 0))):
        return "activating"
    return str(st.get("state", "inactive"))


def request(want: str, restart: bool) -> int:
    pid = init_pid()
    if not pid:
        return no_systemd()
    req = unit.read_request()
    token = int(req.get("token", 0))
    if restart or req.get("want") != want:
        token += 1
    unit.write_request(want, token)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        st = unit.read_status()
        if (
            st.get("token") == token
            and st.get("state") == want
            and (want == "inactive" or state.pid_alive(int(st.get("pid", 0))))
        ):
            return 0
        time.sleep(0.05)
    print(f"Job for kubelet.service timed out ({want}).", file=sys.stderr)
    return 1


def status() -> int:
    st = current_state()
    info = unit.read_status()
    since = _dt.datetime.fromtimestamp(float(info.get("since", time.time())), _dt.timezone.utc)
    active = {"active": "active (running)", "activating": "activating (auto-restart)"}.get(
        st, "inactive (dead)"
    )
    print(
        "● kubelet.service - kubelet: The Kubernetes Node Agent\n"
        "     Loaded: loaded (/etc/systemd/system/kubelet.service; enabled; preset: enabled)\n"
        "    Drop-In: /etc/systemd/system/kubelet.service.d\n"
        "             └─10-kubeadm.conf\n"
        f"     Active: {active} since {since:%a %Y-%m-%d %H:%M:%S} UTC"
    )
    if st == "active":
        print(f"   Main PID: {info.get('pid')} (kubelet)")
    try:
        lines = (
            node_path("/var/log/kindbed/kubelet.log").read_text(errors="replace").splitlines()[-10:]
        )
    except OSError:
        lines = []
    if lines:
        print()
        print("\n".join(lines))
    return 0 if st == "active" else 3


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("-")]
    quiet = "-q" in argv or "--quiet" in argv
    if not args:
        print("kindbed systemctl stand-in: a verb is required", file=sys.stderr)
        return 1
    verb, units = args[0], args[1:]
    if not units and verb != "daemon-reload":
        print(f"Too few arguments for '{verb}'.", file=sys.stderr)
        return 1
    if not init_pid():  # every verb asks the manager over its bus (bus_connect_transport_systemd)
        return no_systemd()
    if verb == "daemon-reload":
        return 0
    return unit_verb(verb, units[0], quiet)


def unit_verb(verb: str, unit_arg: str, quiet: bool) -> int:  # noqa: PLR0911 - one per verb
    name = unit_name(unit_arg)
    if name is None:
        if verb == "is-active":
            if not quiet:
                print("inactive")
            return 3
        print(
            f"Unit {unit_arg.removesuffix('.service')}.service could not be found.", file=sys.stderr
        )
        return 4 if verb == "status" else 5
    if verb in ("start", "stop", "restart", "try-restart", "reload-or-restart"):
        return request("inactive" if verb == "stop" else "active", restart=verb != "start")
    if verb == "is-active":
        st = current_state()
        if not quiet:
            print(st)
        return 0 if st == "active" else 3
    if verb == "status":
        return status()
    if verb in ("enable", "disable"):
        return 0
    if verb == "is-enabled":
        print("enabled")
        return 0
    print(f"kindbed systemctl stand-in: unsupported verb {verb!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
