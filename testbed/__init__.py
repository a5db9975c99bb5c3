"""A kind-shaped HA test bed on a real Docker engine (issue #3).

Real etcd 3.5 and real haproxy; Kubernetes parts are the stand-ins in `testbed.standins`.
Entry points: `testbed.engine.ensure_engine`, `testbed.images.ensure_images`,
`testbed.bed.create_bed`, `testbed.breaking.permute`, `testbed.checks.check_bed`.
"""
