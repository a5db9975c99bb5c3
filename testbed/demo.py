"""`make demo`: build, create a 3-control-plane bed, break it, audit, repair, verify, tear down.

Prints each step and a final `VERDICT:` line; exits non-zero unless the bed ends healthy.
kindfix's audit and repair are being written in parallel: a missing command is reported, never
faked, and the bed is destroyed whatever happens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from testbed import engine, images
from testbed.bed import Bed, create_bed
from testbed.breaking import permute
from testbed.checks import check_bed, wait_healthy

KINDFIX_TIMEOUT_S = 600
VERIFY_WAIT_S = 30.0  # as the integration tests wait for the bed's own check after a repair


def step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def _kindfix(bed: Bed, *args: str) -> int:
    env = {**os.environ, "KIND_EXPERIMENTAL_DOCKER_NETWORK": bed.network}
    argv = [sys.executable, "-m", "kindfix", *args]
    print("$ KIND_EXPERIMENTAL_DOCKER_NETWORK=" + bed.network, " ".join(argv[1:]), flush=True)
    try:
        return subprocess.run(argv, env=env, timeout=KINDFIX_TIMEOUT_S, check=False).returncode
    except subprocess.TimeoutExpired:
        print(f"kindfix {args[0]} timed out after {KINDFIX_TIMEOUT_S}s", flush=True)
        return 124


def _has_command(name: str) -> bool:
    res = subprocess.run(
        [sys.executable, "-m", "kindfix", name, "--help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return res.returncode == 0


def _run(bed: Bed) -> tuple[str, ...]:
    """Break, audit, repair, verify; return the reasons the bed is not healthy."""
    print(
        f"cluster={bed.cluster} network={bed.network} subnet={bed.subnet} "
        f"created in {bed.timings['create_s']:.1f}s; IPs {bed.ips()}"
    )
    step("break it: stop all nodes, start them rotated (Docker hands out permuted IPs)")
    perm = permute(bed)
    print(f"IPs before {perm.before}\nIPs after  {perm.after} ({perm.seconds:.1f}s)")
    step("check the broken bed")
    broken = check_bed(bed)
    print(f"broken as expected: {not broken.healthy}")
    for r in broken.reasons:
        print(f"  - {r}")
    if _has_command("audit"):
        step(f"kindfix audit --name {bed.cluster}")
        print(f"audit exit code {_kindfix(bed, 'audit', '--name', bed.cluster)}")
    else:
        step("kindfix audit: not available yet (`python -m kindfix audit --help` fails)")
    if _has_command("repair"):
        step(f"kindfix repair --name {bed.cluster} --yes")
        print(f"repair exit code {_kindfix(bed, 'repair', '--name', bed.cluster, '--yes')}")
    else:
        step("kindfix repair: not available yet (`python -m kindfix repair --help` fails)")
    step("verify")
    t = time.monotonic()
    report = wait_healthy(bed, VERIFY_WAIT_S)  # the components settle a few seconds
    print(f"the bed's own check: {'healthy' if report.healthy else 'NOT healthy'} "
          f"after {time.monotonic() - t:.0f}s (bound {VERIFY_WAIT_S:.0f}s)")
    for r in report.reasons:
        print(f"  - {r}")
    return report.reasons


def main() -> int:
    t0 = time.monotonic()
    reasons: tuple[str, ...] = ("the demo did not get to the verification",)
    try:
        step("ensure Docker engine")
        client = engine.ensure_engine()
        step("build images (cached by recipe hash)")
        built = images.ensure_images()
        print(
            f"node={built.images.node} lb={built.images.lb} built={list(built.built)} "
            f"in {built.seconds:.1f}s"
        )
        step("create a 3-control-plane bed + external load balancer (kind node generation v0.15)")
        bed = create_bed(
            control_planes=3,
            workers=0,
            generation="v0.15",
            lb="by-name",
            client=client,
            images=built.images,
        )  # destroys itself if it fails
        try:
            reasons = _run(bed)
        finally:
            step(f"destroy bed {bed.id}")
            bed.destroy()
    except Exception as err:  # the demo's edge: report, then the verdict line
        reasons = (f"demo failed: {type(err).__name__}: {err}",)
    print(f"demo took {time.monotonic() - t0:.0f}s")
    print(
        "VERDICT: healthy" if not reasons else "VERDICT: NOT healthy: " + "; ".join(reasons),
        flush=True,
    )
    return 0 if not reasons else 1


if __name__ == "__main__":
    sys.exit(main())
