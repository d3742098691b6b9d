#!/usr/bin/env bash
# //examples:word_count over a generated tree whose words have known counts: the top words and the totals equal a
# single-process count made here with coreutils (find | tr | sort | uniq -c), gzip'd files are read gunzipped (and
# one that is not gzip is named and fails the count), progress is plain lines off a terminal and a bar on one, and
# a missing folder is an error.
source examples/test_lib.sh
source examples/word_count_tree.sh
tree="$scratch/tree"
make_tree "$tree"
reference=$(reference "$tree")
reference_words=$(reference_words "$tree")
check "the single-process count finds the known counts" '[ "$reference" = "$known" ] && [ "$reference_words" -eq 1403 ]'

run examples/word_count --top 6 --workers 2 "$tree"
check "exits 0" '[ "$rc" -eq 0 ]'
top=$(sed -n '/^top 6:$/,$p' <<<"$out" | tail -n +2 | awk '{print $1, $2}')
check "the top 6 equal the single-process count" '[ "$top" = "$reference" ]'
check "the total equals the single-process count" '[[ "$out" == *"2 workers: $reference_words words, 7 different"* ]]'
summary="41 files (0.0 MiB, 1 gzip'd) under $tree"
check "41 files counted, the gzip'd one among them" '[[ "$out" == *"$summary"* ]]'
check "plain progress lines off a terminal, up to 100%" \
  '[[ "$out" == *"progress: 100% (41 of 41 files)"* ]] && [[ "$out" != *$'"'\r'"'* ]]'

run examples/word_count --top 7 --workers 2 "$tree"
check "the gzip'd file's words are counted" '[ "$rc" -eq 0 ] && [[ "$out" == *$'"'\n'"'"         3 zeta"* ]]'

mkdir -p "$scratch/broken"
echo "alpha beta" > "$scratch/broken/plain.txt"
echo "not gzip at all" > "$scratch/broken/fake.gz"
run examples/word_count --workers 2 "$scratch/broken"
check "a .gz that is not gzip is named, exit 1, the other files still count" \
  '[ "$rc" -eq 1 ] && [[ "$err" == *"could not read $scratch/broken/fake.gz"* ]] && [[ "$out" == *": 2 words, 2 different"* ]]'

run script -qec "examples/word_count --top 3 --workers 2 '$tree'" /dev/null
bar=$'\r''[#########################] 100%  41 of 41 files'
check "a progress bar on a terminal" '[ "$rc" -eq 0 ] && [[ "$out" == *"$bar"* ]] && [[ "$out" != *"progress:"* ]]'

BUILD_WORKING_DIRECTORY=$scratch run examples/word_count --top 1 tree
check "under bazel run, a relative folder is where bazel was run" '[ "$rc" -eq 0 ] && [[ "$out" == *"520 beta"* ]]'
run examples/word_count "$scratch/missing"
check "a missing folder exits non-zero and is named" '[ "$rc" -ne 0 ] && [[ "$err" == *"no such folder: $scratch/missing"* ]]'
run examples/word_count "$tree" "$tree"
check "a second folder is named as unexpected, exit 2" '[ "$rc" -eq 2 ] && [[ "$err" == *"unexpected argument"* ]]'
finish
