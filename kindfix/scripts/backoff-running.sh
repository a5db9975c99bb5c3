# kindfix/backoff.py, waiting after the clear: prints the names of the static pod containers in
# "$@" that run now, one a line.
for c; do
  [ -z "$(crictl ps -q --state running --name "^$c\$" 2>/dev/null)" ] || echo "$c"
done
