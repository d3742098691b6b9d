#!/usr/bin/env bash
# //examples:parallel_sort with small arrays, with 2 and 3 workers (3 runs: a run is carried over a merge round):
# the result is sorted and equal to std::sort of the input, the pages per node and the speed-up are printed.
source examples/test_lib.sh
for workers in 2 3; do
  run examples/parallel_sort --count 200003 --workers "$workers"
  check "$workers workers: exits 0" '[ "$rc" -eq 0 ]'
  check "$workers workers: sorted, and the same keys as std::sort" \
    '[[ "$out" == *"$workers workers: sorted: yes; the same keys as std::sort of the input: yes"* ]]'
  check "$workers workers: pages per node, none absent" '[[ "$out" =~ pages\ per\ node:\ (\ ?[0-9]+:[1-9][0-9]*)+\ absent:0 ]]'
  check "$workers workers: the times and the speed-up" \
    '[[ "$out" =~ std::sort\ [0-9.]+\ s,\ pool\ [0-9.]+\ s\ \(runs\ sorted\ [0-9.]+\ s,\ merged\ [0-9.]+\ s\):\ speed-up\ x[0-9.]+ ]]'
done
run examples/parallel_sort --count 1 --workers 2
check "one key: sorted" '[ "$rc" -eq 0 ] && [[ "$out" == *"sorted: yes"* ]]'
run examples/parallel_sort --workers 0
check "0 workers is named, exit 2" '[ "$rc" -eq 2 ] && [[ "$err" == *"--workers"*"positive"* ]]'
finish
