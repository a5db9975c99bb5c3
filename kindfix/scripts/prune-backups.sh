# `kindfix prune` (kindfix/retention.py): removes each path in "$@" (a run's backups), stopping
# at the first that cannot be removed (its exit code, rm's message on stderr).
for p; do rm -rf -- "$p" || exit; done
