# etcd recovery (kindfix/recovery/): undoes a preparation that stopped etcd and staged its
# restore, before anything was swapped in. "$1" "unpark" (this run stopped etcd: the parked
# manifest goes back, the kubelet starts etcd on its own data) or "clean" (only the staged files
# go), "$2" etcd.yaml, "$3" its parked copy, "$4" the data dir.
set -e
how=$1; manifest=$2; parked=$3; data=$4
if [ "$how" = unpark ] && [ -f "$parked" ] && [ ! -e "$manifest" ]; then
  t=$(mktemp "$(dirname "$manifest")/.kindfix.XXXXXX")
  # shellcheck disable=SC2015  # rm only when cp or mv failed
  cp -p "$parked" "$t" && mv -f "$t" "$manifest" || { rm -f "$t"; exit 1; }
fi
[ "$how" != unpark ] || rm -f "$parked"
# a kubelet that started without an API server may not act on the manifest's return (finding 1)
if [ "$how" = unpark ] && command -v systemctl >/dev/null 2>&1; then
  systemctl restart kubelet || echo "kindfix: systemctl restart kubelet failed" >&2
fi
rm -rf "$data/.kindfix-restore" "$data/.kindfix-restore.tmp"
rm -f "$data/.kindfix-snapshot.db" "$data/.kindfix-snapshot.db.tmp"
