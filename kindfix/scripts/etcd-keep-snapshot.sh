# etcd recovery (kindfix/recovery/): the member's backend "$1/member/snap/db", kept as
# "$1/.kindfix-snapshot.db" (atomically) for the snapshot restore of every member.
cp "$1/member/snap/db" "$1/.kindfix-snapshot.db.tmp" && mv "$1/.kindfix-snapshot.db.tmp" "$1/.kindfix-snapshot.db"
