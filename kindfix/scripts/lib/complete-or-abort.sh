# complete_or_abort TEMP SHA256: renames only a complete copy. A client killed mid-stream ends
# stdin early, and a partial file must never replace the original: a temp file without the
# sha256 it must have is removed and the script exits 5.
# (Not `complete`: bash has a builtin of that name.)
complete_or_abort() {
  [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$2" ] && return 0
  rm -f "$1"; echo "kindfix: incomplete write refused" >&2; exit 5
}
