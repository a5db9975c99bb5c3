# durable FILE...: makes what was renamed survive a crash of the node (the file's data before the
# rename, the directory entry after it). `sync FILE` is an fsync (coreutils >= 8.24, every kind
# node); an older sync ignores the arguments and flushes everything, still correct.
durable() { sync "$@" 2>/dev/null || true; }
