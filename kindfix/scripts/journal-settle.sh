# The journal (kindfix/journal.py), after journal-regenerate.sh: "$1" commit: the new pairs are
# verified, the old ones (<file>.kindfix-old) go (the backups keep them); "$1" revert: the new
# pairs failed verification, the old ones move back. Then the files.
# needs: durable
set -e
how=$1; shift
for f; do
  [ -e "$f.kindfix-old" ] || continue
  if [ "$how" = commit ]; then rm -f "$f.kindfix-old"; else mv -f "$f.kindfix-old" "$f"; fi
done
durable "$(dirname "$1")"
