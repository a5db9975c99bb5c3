# The atomic write of kindfix.node.ContainerNode.write_file: stdin to a temp file next to "$1",
# mode "$2" (octal), then renamed over it. Renames only a complete copy: "$3" is the sha256 stdin
# must have (exit 5 otherwise, lib/complete-or-abort.sh).
# needs: complete-or-abort temp-cleanup durable
set -e
p="$1"; mode="$2"
d=$(dirname "$p")
mkdir -p "$d"
t=$(mktemp "$d/.kindfix.XXXXXX")
cat > "$t"
complete_or_abort "$t" "$3"
chmod "$mode" "$t"
durable "$t"
mv -f "$t" "$p"; t=
durable "$d"
