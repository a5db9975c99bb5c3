# snapshot_status DATA IMAGE TOOLS: prints the tool that worked (the first of TOOLS, e.g.
# "etcdctl etcdutl", that reads it; kindfix/recovery/manifest.py status_tools orders them by the
# image's etcd version), then `snapshot status -w json` of the member's backend
# DATA/member/snap/db. Exit 3: none worked.
# needs: tool-run
snapshot_status() (
  err=$(mktemp); trap 'rm -f "$err"' EXIT
  data=$1
  # shellcheck disable=SC2034  # img: read by tool_run
  img=$2
  for tool in $3; do
    if out=$(tool_run "$tool" snapshot status "$data/member/snap/db" -w json); then
      printf '%s\n%s\n' "$tool" "$out"; exit 0
    fi
    printf '%s: %s\n' "$tool" "$(tail -n 3 "$err")" >&2
  done
  exit 3
)
