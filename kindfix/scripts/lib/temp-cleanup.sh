# A script that makes a temp file sets $t: whatever stops it (a failed command under set -e, a
# signal) removes the temp file on the way out; a renamed one is forgotten (t=) first.
t=
trap 'rm -f "$t"' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
