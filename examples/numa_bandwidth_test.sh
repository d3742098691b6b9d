#!/usr/bin/env bash
# //examples:numa_bandwidth with a small array: for every placement the pages are all present, and a worker on
# each node with CPUs reports a bandwidth it measured.
source examples/test_lib.sh
run examples/numa_bandwidth --mib 8
check "exits 0" '[ "$rc" -eq 0 ]'
placements=$(grep -c "pages per node: " <<<"$out")
check "at least the bind, interleave and local placements" '[ "$placements" -ge 3 ]'
# 8 MiB = 2048 pages of 4 KiB: "0:1024 1:1024 absent:0" sums to 2048 on every line.
page_sums=$(awk -F'pages per node: ' 'NF == 2 {n = split($2, f, "[ :]"); s = 0; for (i = 2; i <= n; i += 2) s += f[i]; print s, f[n]}' <<<"$out" | sort -u)
check "every placement has all 2048 pages present" '[ "$page_sums" = "2048 0" ]'
readers=$(grep -cE "^    worker on node [0-9]+ reads [0-9]*[1-9][0-9]*\.[0-9]+ GB/s$|^    worker on node [0-9]+ reads 0\.[0-9]*[1-9][0-9]* GB/s$" <<<"$out")
check "each placement read by at least one worker, at a bandwidth above 0" '[ "$readers" -ge "$placements" ]'
run examples/numa_bandwidth --mib 0
check "0 MiB is named, exit 2" '[ "$rc" -eq 2 ] && [[ "$err" == *"--mib"* ]]'
finish
