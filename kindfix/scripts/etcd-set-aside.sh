# etcd recovery (kindfix/recovery/): the member dir "$1/member" out of the way before the member
# joins again as a new one; "$2" is the member's backup dir (lib/set-aside.sh).
# needs: set-aside
set_aside "$1" "$2"
