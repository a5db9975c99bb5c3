# copy_data SRC DST [live]: copies the data dir SRC to DST and, unless "live", checks every file's
# checksum and size against the original (etcd is stopped). A DST there already is a killed
# run's copy: kept, unless "checked" finds it differs from SRC (etcd ran on SRC since, e.g. after
# an undone preparation): then SRC is copied anew and replaces it once checked. "live": etcd
# still runs (member update), so the copy is not compared.
# POSIX cksum (CRC32): it catches a copy that went wrong, and on coreutils >= 9 it is ~25x faster
# than sha256sum (17 ms vs 480 ms for a 64 MB WAL segment on the test machine). wal/*.tmp is
# etcd's preallocated, still empty next WAL segment (64 MB): etcd makes a new one, so it is
# neither copied nor hashed. The copy is sparse where GNU cp can (--sparse=always, probed): etcd
# preallocates each WAL segment (64 MB) and writes its records from the start, so a segment holds
# KB of records and MB of zeros, which become holes (the same bytes read back, checksum and all).
# On the bed a member's copy wrote 63 MB in 190 ms without, 1.3 MB in 30 ms with, and a repair's
# backups of 3 members took 190 MB of the node's disk. Exit 3: no SRC; 4: the copy differs; 7: cp
# failed (said why).
# needs: sums
copy_data() (
  set -e
  src="$1"; dst="$2"; how="${3:-checked}"
  [ -d "$src" ] || { echo "no data dir $src" >&2; exit 3; }
  if [ -d "$dst" ]; then
    [ "$how" != live ] && [ "$(sums "$src")" != "$(sums "$dst")" ] || exit 0
    echo "kindfix: $src changed since it was copied to $dst (etcd ran again): copying anew" >&2
  fi
  rm -rf "$dst.tmp"
  mkdir -p "$dst.tmp"
  # shellcheck disable=SC2164  # set -e: a failed cd ends the copy
  cd "$src"
  find . -type d -exec mkdir -p "$dst.tmp/{}" \;
  sparse=--sparse=always  # GNU cp (kind's images); a cp without it copies every byte
  cp "$sparse" /dev/null "$dst.tmp/.kindfix-probe" 2>/dev/null || sparse=
  rm -f "$dst.tmp/.kindfix-probe"
  # checked here rather than left to set -e (no clean-up, no reason said): a failed cp (a full
  # disk) gives its space back and says why in its last line; it is not a differing copy (exit
  # 4), so it is not retried.
  # shellcheck disable=SC2086  # $sparse: one option, or none
  if ! e=$(find . -type f ! -name '*.tmp' -exec cp -p $sparse --parents -t "$dst.tmp" {} + 2>&1)
  then
    rm -rf "$dst.tmp"
    echo "copying $src to $dst failed: $(printf '%s\n' "$e" | head -n 1)" >&2
    exit 7
  fi
  if [ "$how" != live ]; then
    [ "$(sums .)" = "$(sums "$dst.tmp")" ] || {
      echo "copy of $src differs from the original" >&2; exit 4; }
  fi
  chmod 700 "$dst.tmp"
  if [ -d "$dst" ]; then
    rm -rf "$dst.old"
    mv "$dst" "$dst.old"
  fi
  mv "$dst.tmp" "$dst"
  rm -rf "$dst.old"
)
