"""kindfix: repair kind clusters broken by Docker re-assigning node IP addresses.

The pipeline, room by room. Arrows point one way: a module uses its own room and the rooms above
it, never one below (tests/unit/test_layout.py checks that, that every module is named here
once, and that nothing imports in a cycle). Each module's docstring says its job.

engine: talking to Docker or Podman, and into nodes
    runtime, docker_runtime, docker_exec, docker_inspect, dockerhost, node, nodescripts, lanes,
    errors, names
observe: what is there, read-only
    discovery, observe, probes, etcd, kubeapi, patches, docpath, yamlpath, yamldoc, flatdoc,
    addresses, x509, dump, dump_format, dump_load, redact, redact_text
audit: what is stale and why, pure; and when to look (the start-up and boot waits)
    audit, findings, loadbalancer, settle, boot
plan: what to change, pure
    steps, plan, rewrite, scope
apply: changing it with nothing lost (recovery: one module per etcd strategy; resume: what a
killed run still owes)
    context, apply, actions, journal, journal_format, lock, kubelet, backoff, recovery, resume,
    loadbalancer_write
verify: proving it healthy (leases: beside verify, releases Leases whose holder is gone)
    verify, leases
verbs: one core call per command, and the ad-hoc ones
    api, etcdview, backup, restore, retention, pin
command line
    cli, cli_common, cli_repair, cli_backup, cli_etcd, completion, render
"""

__version__ = "0.1.0"
