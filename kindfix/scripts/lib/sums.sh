# sums DIR: every file's POSIX cksum under DIR, sorted, but etcd's preallocated wal/*.tmp (a
# 64 MB segment, still empty, that etcd makes again): what a copy of a data dir is checked by.
sums() (
  cd "$1" && find . -type f ! -name '*.tmp' -exec cksum {} + | sort
)
