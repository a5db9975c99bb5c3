# etcd recovery (kindfix/recovery/): moves the member dir "$1/member" into "$2" (never deleted)
# before the member joins again as a new one; nothing to do when it is gone already.
set -e
[ -d "$1/member" ] || exit 0
mkdir -p "$2"
aside=$(mktemp -d "$2/member-$(date +%s)-XXXXXX")  # unique: two set-asides in one second
rmdir "$aside"; mv "$1/member" "$aside"
