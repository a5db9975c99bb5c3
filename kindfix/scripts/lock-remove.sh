# The cluster lock (kindfix/lock.py): release or break it. "$1" lock path, "$2" the token the
# caller saw. Removes the lock only if it still holds that token, under a mutex every remover
# takes (a remover killed inside it leaves the mutex behind: older than 30 s it is taken over).
# Bounded: 50 tries, 0.1 s apart. Prints "@@kindfix removed" or "@@kindfix kept".
lock="$1"; token="$2"; m="$lock.break"; i=0
until mkdir "$m" 2>/dev/null; do
  i=$((i+1)); [ "$i" -le 50 ] || { echo "kindfix: $m stays busy" >&2; exit 4; }
  now=$(date +%s); mt=$(stat -c %Y "$m" 2>/dev/null || echo "$now")
  [ $((now - mt)) -gt 30 ] && rmdir "$m" 2>/dev/null && continue
  sleep 0.1
done
first=""; read -r first < "$lock" 2>/dev/null
if [ -n "$first" ] && [ "$first" = "$token" ]; then rm -f "$lock"; r=removed; else r=kept; fi
rmdir "$m"
echo "@@kindfix $r"
