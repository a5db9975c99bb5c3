# The cluster lock (kindfix/lock.py): "$1" lock path, "$2" our token. Refreshes our heartbeat
# (the lock's mtime) and prints "@@kindfix alive", or "@@kindfix lost" when it is not ours.
first=""; read -r first < "$1" 2>/dev/null
if [ "$first" = "$2" ]; then touch -c "$1" && echo "@@kindfix alive"; else echo "@@kindfix lost"; fi
