#!/usr/bin/env bash
# //examples:quickstart with a small array: the pool's result equals one process's, the pages-per-node evidence
# and the speed-up are printed, and bad options are named with exit code 2.
source examples/test_lib.sh
run examples/quickstart --count 20000 --workers 2
check "exits 0" '[ "$rc" -eq 0 ]'
check "prints the topology" '[[ "$out" == *"node 0 cpus:"* ]]'
check "the pool's sum equals one process's" \
  '[[ "$out" =~ Collatz\ steps\ of\ 1\.\.20000:\ ([0-9]+)\ with\ 2\ workers,\ ([0-9]+)\ in\ one\ process:\ equal ]] &&
   [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]'
check "prints the pages per node of the array, none absent" \
  '[[ "$out" =~ policy\ interleave:[0-9,-]+,\ pages\ per\ node:\ (\ ?[0-9]+:[1-9][0-9]*)+\ absent:0 ]]'
check "prints the speed-up" '[[ "$out" =~ one\ process\ [0-9.]+\ s,\ pool\ [0-9.]+\ s:\ speed-up\ x[0-9.]+ ]]'

run examples/quickstart --count many
check "a malformed value exits 2" '[ "$rc" -eq 2 ]'
check "a malformed value is named" '[[ "$err" == *"--count"*"many"* ]]'
run examples/quickstart --size 5
check "an unknown option exits 2 and is named" '[ "$rc" -eq 2 ] && [[ "$err" == *"unknown option '"'"'--size'"'"'"* ]]'
run examples/quickstart --help
check "--help prints the usage to stdout, exit 0" '[ "$rc" -eq 0 ] && [[ "$out" == usage:*--count* ]]'
finish
