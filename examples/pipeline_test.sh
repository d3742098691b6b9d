#!/usr/bin/env bash
# //examples:pipeline: every line reaches the collector exactly once through the two queues, with its words, and
# no message is lost.
source examples/test_lib.sh
run examples/pipeline --workers 3 --lines 5000
check "exits 0" '[ "$rc" -eq 0 ]'
check "every line collected, 4 words each, none lost" '[[ "$out" == "5000 lines, 20000 words, lost to dead workers: 0"* ]]'
per_worker=$(awk '/^  worker [0-9]+: [0-9]+ lines$/ {n++; sum += $3} END {print n, sum}' <<<"$out")
check "3 workers, their lines add up to 5000" '[ "$per_worker" = "3 5000" ]'
run examples/pipeline --lines -5
check "a negative count is named, exit 2" '[ "$rc" -eq 2 ] && [[ "$err" == *"--lines"*"-5"* ]]'
finish
