# set_aside DATA BACKUP: the member dir DATA/member out of the way before another member takes
# its place. When it is the same as BACKUP/data/member (the copy checked once etcd stopped, etcd
# not having run since), that copy is its backup and it is removed; else it moves to
# BACKUP/stale/member-<time>-<random>, kept. Never moved when the same: on a kind node /var (the
# data) is a volume and /kind (the backups) is not, so a move copies every byte (each WAL segment
# is preallocated to 64 MB), and a full disk must not stop a swap. Nothing to do when DATA/member
# is gone already.
# needs: sums
set_aside() (
  set -e
  data=$1; backup=$2
  rm -rf "$data/.kindfix-gone"  # a member removed before, its removal cut short
  [ -d "$data/member" ] || exit 0
  if [ -d "$backup/data/member" ] && \
      [ "$(sums "$data/member")" = "$(sums "$backup/data/member")" ]; then
    mv "$data/member" "$data/.kindfix-gone"
    rm -rf "$data/.kindfix-gone"
    exit 0
  fi
  mkdir -p "$backup/stale"
  aside=$(mktemp -d "$backup/stale/member-$(date +%s)-XXXXXX")  # unique: two in one second
  rmdir "$aside"; mv "$data/member" "$aside"
)
