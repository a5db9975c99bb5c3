# The cluster lock (kindfix/lock.py): who holds it. "$1" lock path.
# Prints "@@kindfix free", or "@@kindfix held <now> <mtime>" and the lock's content.
lock="$1"
if [ -e "$lock" ]; then
  printf '@@kindfix held %s %s\n' "$(date +%s)" "$(stat -c %Y "$lock" 2>/dev/null || echo 0)"
  cat "$lock" 2>/dev/null
else
  echo "@@kindfix free"
fi
