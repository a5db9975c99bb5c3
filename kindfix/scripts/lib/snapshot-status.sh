# snapshot_status DATA IMAGE: prints the tool that worked (etcdutl, else etcdctl), then
# `snapshot status -w json` of the member's backend DATA/member/snap/db. Exit 3: neither worked.
# needs: tool-run
snapshot_status() (
  err=$(mktemp); trap 'rm -f "$err"' EXIT
  data=$1
  # shellcheck disable=SC2034  # img: read by tool_run
  img=$2
  for tool in etcdutl etcdctl; do
    if out=$(tool_run "$tool" snapshot status "$data/member/snap/db" -w json); then
      printf '%s\n%s\n' "$tool" "$out"; exit 0
    fi
    printf '%s: %s\n' "$tool" "$(tail -n 3 "$err")" >&2
  done
  exit 3
)
