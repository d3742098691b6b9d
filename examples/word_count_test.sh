#!/usr/bin/env bash
# //examples:word_count over a generated tree whose words have known counts: the top words and the totals equal a
# single-process count made here with coreutils (find | tr | sort | uniq -c), gzip'd files are skipped, progress
# is plain lines off a terminal and a bar on one, and a missing folder is an error.
source examples/test_lib.sh
source examples/word_count_tree.sh
tree="$scratch/tree"
make_tree "$tree"
reference=$(reference "$tree")
reference_words=$(reference_words "$tree")
check "the single-process count finds the known counts" '[ "$reference" = "$known" ] && [ "$reference_words" -eq 1400 ]'

run examples/word_count --top 6 --workers 2 "$tree"
check "exits 0" '[ "$rc" -eq 0 ]'
top=$(sed -n '/^top 6:$/,$p' <<<"$out" | tail -n +2 | awk '{print $1, $2}')
check "the top 6 equal the single-process count" '[ "$top" = "$reference" ]'
check "the total equals the single-process count" '[[ "$out" == *"2 workers: $reference_words words, 6 different"* ]]'
summary="40 files (0.0 MiB) under $tree, 1 gzip'd files skipped"
check "40 files counted, the gzip'd one skipped" '[[ "$out" == *"$summary"* ]] && [[ "$out" != *zeta* ]]'
check "plain progress lines off a terminal, up to 100%" \
  '[[ "$out" == *"progress: 100% (40 of 40 files)"* ]] && [[ "$out" != *$'"'\r'"'* ]]'

run script -qec "examples/word_count --top 3 --workers 2 '$tree'" /dev/null
bar=$'\r''[#########################] 100%  40 of 40 files'
check "a progress bar on a terminal" '[ "$rc" -eq 0 ] && [[ "$out" == *"$bar"* ]] && [[ "$out" != *"progress:"* ]]'

BUILD_WORKING_DIRECTORY=$scratch run examples/word_count --top 1 tree
check "under bazel run, a relative folder is where bazel was run" '[ "$rc" -eq 0 ] && [[ "$out" == *"520 beta"* ]]'
run examples/word_count "$scratch/missing"
check "a missing folder exits non-zero and is named" '[ "$rc" -ne 0 ] && [[ "$err" == *"no such folder: $scratch/missing"* ]]'
run examples/word_count "$tree" "$tree"
check "a second folder is named as unexpected, exit 2" '[ "$rc" -eq 2 ] && [[ "$err" == *"unexpected argument"* ]]'
finish
