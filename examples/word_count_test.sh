#!/usr/bin/env bash
# //examples:word_count over a generated tree whose words have known counts: the top words and the totals equal a
# single-process count made here with coreutils (find | tr | sort | uniq -c), gzip'd files are skipped, progress
# is plain lines off a terminal and a bar on one, and a missing folder is an error.
source examples/test_lib.sh
tree="$scratch/tree"
mkdir -p "$tree/a/b" "$tree/c"
# 40 files in three folders. Per file: beta 13, alpha 10, gamma 5, delta 3, epsilon 3 (a tie, broken
# alphabetically), file 1; in mixed case, split by punctuation and digits.
for i in $(seq 1 40); do
  dir=$tree; [ $((i % 3)) -eq 1 ] && dir=$tree/a/b; [ $((i % 3)) -eq 2 ] && dir=$tree/c
  {
    for _ in 1 2 3 4 5; do echo "Alpha alpha, beta-BETA; gamma"; done
    echo "beta2beta3beta (file $i) DELTA delta delta epsilon.epsilon.epsilon"
  } > "$dir/file$i.txt"
done
printf 'zeta %.0s' $(seq 1 1000) | gzip > "$tree/c/skipped.gz"
known=$'520 beta\n400 alpha\n200 gamma\n120 delta\n120 epsilon\n40 file'
words() { find "$tree" -type f ! -name '*.gz' -exec cat {} + | LC_ALL=C tr -cs 'A-Za-z' '\n' | grep -v '^$'; }
reference=$(words | LC_ALL=C tr 'A-Z' 'a-z' | LC_ALL=C sort | uniq -c | LC_ALL=C sort -k1,1nr -k2,2 | head -n 6 |
            awk '{print $1, $2}')
reference_words=$(words | wc -l)
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
