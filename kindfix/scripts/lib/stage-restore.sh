# stage_restore DATA IMAGE TOOL FLAGS...: restores "DATA/.kindfix-snapshot.db" as this member
# into "DATA/.kindfix-restore" with TOOL's `snapshot restore` (skipped when a restored member made
# after that snapshot waits there already: a killed run repeats it from the snapshot, which is
# removed only later; one older than the snapshot is from an earlier choice of the best member,
# left by an undo that could not reach this node, and is made again). The member's own data is
# not touched.
# needs: tool-run
stage_restore() (
  err=$(mktemp); trap 'rm -f "$err"' EXIT
  set -e
  data=$1
  # shellcheck disable=SC2034  # img: read by tool_run
  img=$2
  tool=$3; shift 3
  out="$data/.kindfix-restore"
  # POSIX find -newer: test's -nt is not POSIX
  if [ ! -d "$out/member" ] || [ -n "$(find "$data/.kindfix-snapshot.db" -newer "$out")" ]; then
    rm -rf "$out" "$out.tmp"
    tool_run "$tool" snapshot restore "$data/.kindfix-snapshot.db" --skip-hash-check \
      --data-dir "$out.tmp" "$@" >/dev/null || { cat "$err" >&2; exit 3; }
    mv "$out.tmp" "$out"
  fi
)
