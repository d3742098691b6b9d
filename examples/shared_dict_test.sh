#!/usr/bin/env bash
# //examples:shared_dict: every pool task's result, count and log entry reached the Manager's shared objects.
source examples/test_lib.sh
run examples/shared_dict --workers 2 --tasks 3
check "exits 0" '[ "$rc" -eq 0 ]'
for t in 0 1 2; do
  check "task $t recorded its sum" '[[ "$out" =~ task\ $t:\ \{\"pid\":\ [0-9]+,\ \"sum\":\ $((500500 * (t + 1)))\} ]]'
done
check "no other task recorded" '[ "$(grep -c "^task " <<<"$out")" -eq 3 ]'
check "the counter has every item" '[[ "$out" == *"items counted: 3000"* ]]'
check "the log has every entry once" '[ "$(grep -o "task [0-9] done" <<<"$out" | sort | tr "\n" ,)" = "task 0 done,task 1 done,task 2 done," ]'
finish
