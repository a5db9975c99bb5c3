module dev.kindfix/realkind/pause

go 1.24.0
