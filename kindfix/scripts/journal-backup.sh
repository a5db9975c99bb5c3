# The journal (kindfix/journal.py): back up "$1" as "$2" before it changes (mode 0600), durable.
# The first backup in a run is the original: an existing "$2" is kept.
# needs: temp-cleanup durable
set -e
src="$1"; dst="$2"
if [ -e "$dst" ]; then exit 0; fi   # the first backup in a run is the original: keep it
mkdir -p "$(dirname "$dst")"
chmod 700 /kind/kindfix /kind/kindfix/backups 2>/dev/null || true
t="$dst.tmp"
cp -p "$src" "$t"
chmod 600 "$t"
durable "$t"
mv "$t" "$dst"; t=
durable "$(dirname "$dst")"
