# The journal (kindfix/journal.py): one exec per node for its certificates. "$1" the number of
# pairs, then per pair: cert, cert backup, key, key backup; then the command (kubeadm).
# kubeadm keeps any existing CA-signed pair whatever its SANs (DOMAIN.md), so each pair is kept
# (backup) and moved aside (to <file>.kindfix-old, journal.ASIDE) first; when the command fails
# every pair moves back. On success the old pairs stay aside until the new ones are verified
# (journal-settle.sh). A pair a killed run left aside is the old one: it moves back first.
# needs: keep-original
set -e
n=$1; shift
each() {  # each OP ARGS...: OP (back, keep or aside) on every certificate and key
  op=$1; shift; i=0
  while [ "$i" -lt "$n" ]; do on "$op" "$1" "$2"; on "$op" "$3" "$4"; shift 4; i=$((i+1)); done
}
on() {  # on OP FILE BACKUP (a case, not "$op" as a command: shellcheck follows the calls)
  case $1 in
    back) [ ! -e "$2.kindfix-old" ] || mv -f "$2.kindfix-old" "$2" ;;
    keep) keep "$2" "$3" ;;
    aside) [ ! -e "$2" ] || mv -f "$2" "$2.kindfix-old" ;;
  esac
}
command_of() { shift $((4*n)); "$@"; }
each back "$@"
each keep "$@"
each aside "$@"
if command_of "$@"; then exit 0; else rc=$?; fi
each back "$@"
exit "$rc"
