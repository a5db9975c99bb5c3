# keep FILE BACKUP: keeps the original of FILE as BACKUP (mode 0600, its own mode in BACKUP.mode)
# unless the run already has it: the first backup in a run is the original. Durable before it
# returns: the change it guards may be renamed over the original right after.
# needs: durable
keep() {
  [ -e "$1" ] && [ ! -e "$2" ] || return 0
  mkdir -p "$(dirname "$2")"
  chmod 700 /kind/kindfix /kind/kindfix/backups 2>/dev/null || true
  cp -p "$1" "$2.tmp" || { rm -f "$2.tmp"; return 1; }
  stat -c %a "$1" > "$2.mode"
  chmod 600 "$2.tmp" "$2.mode"; durable "$2.tmp" "$2.mode"; mv "$2.tmp" "$2"
  durable "$(dirname "$2")"
}
