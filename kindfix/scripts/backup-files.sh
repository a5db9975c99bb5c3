# `kindfix backup` (kindfix/backup.py): a node's files as one tar stream on stdout.
# "$1" the root the paths are relative to (/ in a node), then the paths. Only the paths that
# exist go in: tar fails on a missing one and would drop the rest of the archive.
cd "$1" || exit 1
shift
for p in "$@"; do shift; [ -e "$p" ] && set -- "$@" "$p"; done
[ $# -gt 0 ] || exit 0
exec tar -cf - "$@"
