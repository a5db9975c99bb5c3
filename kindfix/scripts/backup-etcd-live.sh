# `kindfix backup` (kindfix/backup.py) without quorum: a live copy of etcd's data dir "$1" as a
# gzipped tar on stdout, and the sha256 line of member/snap/db on stderr.
# No writes apply without a leader, so the backend (member/snap/db, what a snapshot restore uses)
# is still; it is checked by its sum before and after the copy, retried while they differ. The
# WAL is copied as it is (a leaderless member still appends its election state to it; tar's
# exit 1, "file changed as we read it", is expected there). The preallocated WAL segment (*.tmp)
# is skipped as repair skips it. Exits 75 when the backend kept changing.
set -e
cd "$1"
t=$(mktemp); trap 'rm -f "$t"' EXIT
for try in 1 2 3 4 5; do
  a=$(sha256sum member/snap/db)
  tar -czf "$t" --warning=no-file-changed --exclude='*.tmp' member || [ $? = 1 ]
  b=$(sha256sum member/snap/db)
  if [ "$a" = "$b" ]; then cat "$t"; printf '%s\n' "$b" >&2; exit 0; fi
  sleep 1
done
echo "member/snap/db kept changing while it was copied ($try tries)" >&2; exit 75
