# The batched read of kindfix.node.ContainerNode.read_files: one exec for every path given as an
# argument. For each prints a header line "@@kindfix <ok|missing|unreadable> <index>" followed,
# when ok, by one line of base64 (parsed by node.parse_read_files_output).
# A fixed script: paths travel as argv, never interpolated into shell text.
i=0
for p in "$@"; do
  if [ -f "$p" ] && [ -r "$p" ]; then
    printf '@@kindfix ok %d\n' "$i"; base64 -w0 < "$p"; printf '\n'
  elif [ -e "$p" ]; then
    printf '@@kindfix unreadable %d\n' "$i"
  else
    printf '@@kindfix missing %d\n' "$i"
  fi
  i=$((i+1))
done
