# The journal (kindfix/journal.py), rolling back: put backup "$1" at "$2" atomically, with the
# mode kept beside the backup ("$1.mode") or else "$3". Exit 8: no such backup.
# needs: temp-cleanup durable
set -e
backup="$1"; dst="$2"; mode="$3"
[ -f "$backup" ] || { echo "kindfix: no backup $backup" >&2; exit 8; }
[ -f "$backup.mode" ] && mode=$(cat "$backup.mode")
t=$(mktemp "$(dirname "$dst")/.kindfix.XXXXXX")
cp "$backup" "$t"
chmod "$mode" "$t"
durable "$t"
mv -f "$t" "$dst"; t=
durable "$(dirname "$dst")"
