# The journal (kindfix/journal.py): one exec per changed file, compare and swap. "$1" the file,
# "$2" its backup, "$3" the sha256 of stdin, "$4" the sha256 the plan was made from ("absent":
# it did not exist). Only when "$1" still has "$4" is the original kept and stdin written
# atomically with its mode; else exit 7 (journal.CHANGED). kind's entrypoint rewrites files while
# a node boots: a change made since observe is never overwritten (the next run plans from it).
# needs: keep-original complete-or-abort temp-cleanup
set -e
now=absent
[ ! -e "$1" ] || now=$(sha256sum < "$1" | cut -d' ' -f1)
if [ "$now" != "$4" ]; then
  echo "kindfix: $1 changed since it was read; run again" >&2; exit 7
fi
keep "$1" "$2"
mode=$(cat "$2.mode" 2>/dev/null || echo 644)
d=$(dirname "$1"); mkdir -p "$d"
t=$(mktemp "$d/.kindfix.XXXXXX"); cat > "$t"; complete_or_abort "$t" "$3"
chmod "$mode" "$t"; durable "$t"
mv -f "$t" "$1"; t=
durable "$d"
