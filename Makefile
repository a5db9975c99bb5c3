# The two commands a newcomer runs: `make demo` (the main job) and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install engine test unit demo bench lint

install:
	$(PIP) install -q -e ".[test]"

engine: install
	$(PYTHON) -m testbed engine

# Unit tests (in-memory fake nodes, fixture dumps), the wheel as users install it (tests/packaging)
# and integration tests on the kind-shaped test bed (real Docker engine, real etcd, real haproxy).
# `engine` installs what a fresh Debian 12 machine lacks (docker.io, debootstrap) and starts dockerd.
test: engine shellcheck
	$(PYTHON) -m pytest -p no:cacheprovider tests

unit: install shellcheck
	$(PYTHON) -m pytest -p no:cacheprovider -m "not docker and not packaging" tests

# Build a 3-control-plane kind-shaped cluster, break it the way Docker does, audit and repair it.
demo: engine
	$(PYTHON) -m testbed.demo

bench: engine
	$(PYTHON) bench/run.py

# shellcheck checks the node scripts (kindfix/scripts); Debian packages it, so a Debian machine
# without it gets it here (root, as on CI); elsewhere install it by hand (brew, dnf: shellcheck).
lint: shellcheck
	$(PYTHON) -m ruff check kindfix tests testbed bench
	$(PYTHON) -m mypy
	shellcheck -s sh kindfix/scripts/*.sh kindfix/scripts/lib/*.sh

.PHONY: shellcheck
shellcheck:
	@command -v shellcheck >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { echo "install shellcheck (make lint needs it)" >&2; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; }

# A real kind v0.30 HA cluster: kind CLI, kubeadm, kubelet, apiserver, etcd, containerd built from Go
# modules; broken the way Docker breaks it, repaired by kindfix (realkind/README.md). Cold: long.
.PHONY: realkind
realkind: engine
	$(PYTHON) realkind/run.py

# kind on Podman (rootful) through its Docker-compatible socket, alone: installs podman when
# missing, loads the bed's node image, repairs a permuted 1 CP + 1 worker cluster (about 1.5 min
# cold, 40 s warm). It is also part of `make test` (KINDFIX_PODMAN=0 leaves it out).
.PHONY: podman-test
podman-test: engine
	$(PYTHON) -m pytest -p no:cacheprovider -m podman tests/integration/test_podman.py
