# The cluster lock (kindfix/lock.py): take it. "$1" lock path, "$2" our token; stdin: the owner
# JSON. The record is written to a temp file, then hard-linked to the lock path (link(2) fails
# when the path exists), so it is complete before anyone can see it.
# Prints "@@kindfix acquired", or "@@kindfix held <now> <mtime>" and the lock's content, or
# "@@kindfix retry" when the lock vanished between the link and the look.
lock="$1"; token="$2"
mkdir -p "$(dirname "$lock")" || exit 3
chmod 700 "$(dirname "$lock")" 2>/dev/null
t="$lock.$token"
{ printf '%s\n' "$token"; date +%s; cat; printf '\n'; } > "$t" || { rm -f "$t"; exit 3; }
if ln "$t" "$lock" 2>/dev/null; then rm -f "$t"; echo "@@kindfix acquired"; exit 0; fi
rm -f "$t"
if [ -e "$lock" ]; then
  printf '@@kindfix held %s %s\n' "$(date +%s)" "$(stat -c %Y "$lock" 2>/dev/null || echo 0)"
  cat "$lock" 2>/dev/null
else
  echo "@@kindfix retry"
fi
