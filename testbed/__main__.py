"""`python -m testbed engine|images|create|permute|check|destroy|sweep|demo`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from testbed import engine


def _bed_json(bed) -> str:
    return json.dumps(
        {
            "id": bed.id,
            "cluster": bed.cluster,
            "network": bed.network,
            "subnet": bed.subnet,
            "control_planes": bed.control_planes,
            "workers": bed.workers,
            "lb": bed.lb,
            "ips": bed.ips(),
            "timings": bed.timings,
        },
        indent=2,
    )


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one return per command
    p = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("engine", help="reuse or install+start the Docker engine")
    sub.add_parser("images", help="build (or reuse) the node and LB images")
    c = sub.add_parser("create", help="create a bed and keep it (prints its id)")
    c.add_argument("--control-planes", type=int, default=1, choices=(1, 3))
    c.add_argument("--workers", type=int, default=0)
    c.add_argument("--generation", default="v0.15", choices=("none", "v0.8", "v0.15", "v0.30"))
    c.add_argument("--lb", default="by-name", choices=("by-name", "literal"))
    c.add_argument("--etcdutl", action="store_true")
    c.add_argument("--seed-keys", type=int, default=100)
    for name in ("permute", "check", "destroy"):
        s = sub.add_parser(name)
        s.add_argument("bed", help="bed id or cluster name")
    sw = sub.add_parser("sweep", help="remove beds of dead processes (--all: every bed)")
    sw.add_argument("--all", action="store_true")
    sub.add_parser("demo", help="what `make demo` runs")
    a = p.parse_args(argv)

    client = engine.ensure_engine()
    if a.cmd == "engine":
        print("engine up:", client.version().get("Version"))
        return 0
    if a.cmd == "images":
        from testbed.images import ensure_images

        r = ensure_images()
        print(
            json.dumps(
                {
                    "node": r.images.node,
                    "lb": r.images.lb,
                    "built": r.built,
                    "seconds": round(r.seconds, 1),
                }
            )
        )
        return 0
    if a.cmd == "demo":
        from testbed.demo import main as demo

        return demo()
    from testbed import bed as bedmod

    if a.cmd == "create":
        bed = bedmod.create_bed(
            a.control_planes,
            a.workers,
            generation=a.generation,
            lb=a.lb,
            etcdutl=a.etcdutl,
            seed_keys=a.seed_keys,
            client=client,
            keep=True,
        )
        print(_bed_json(bed))
        return 0
    if a.cmd == "sweep":
        print("swept:", " ".join(bedmod.sweep_stale(client, everything=a.all)) or "nothing")
        return 0
    bed = bedmod.load_bed(client, a.bed)
    if a.cmd == "destroy":
        bed.destroy()
        print("destroyed", bed.id)
        return 0
    if a.cmd == "permute":
        from testbed.breaking import permute

        perm = permute(bed)
        print(
            json.dumps(
                {"before": perm.before, "after": perm.after, "seconds": round(perm.seconds, 1)},
                indent=2,
            )
        )
        return 0
    from testbed.checks import check_bed

    report = check_bed(bed)
    print(json.dumps(asdict(report), indent=2, default=str))
    print(
        "VERDICT: healthy"
        if report.healthy
        else "VERDICT: NOT healthy: " + "; ".join(report.reasons)
    )
    return 0 if report.healthy else 1


if __name__ == "__main__":
    sys.exit(main())
