#!/usr/bin/env bash
# //examples:word_count_mpi on 3 ranks of this host (one mpirun command, as in the README) counts what one process
# counts with coreutils, with every rank's workers; alone (no mpirun) it is the local word count.
source ipc/pool/mpi/mpi_test_lib.sh
source examples/word_count_tree.sh
scratch=$(mktemp -d "${TEST_TMPDIR:-/tmp}/word_count_mpi.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
tree="$scratch/tree"
make_tree "$tree"
reference=$(reference "$tree")
words=$(reference_words "$tree")
check "the single-process count finds the known counts" '[ "$reference" = "$known" ] && [ "$words" -eq 1403 ]'

mpi_run 3 examples/word_count_mpi --top 6 --workers 2 "$tree"
check "mpirun -np 3: exits 0" '[ "$rc" -eq 0 ]'
top=$(sed -n '/^top 6:$/,$p' <<<"$out" | tail -n +2 | awk '{print $1, $2}')
check "mpirun -np 3: the top 6 equal the single-process count" '[ "$top" = "$reference" ]'
check "mpirun -np 3: every rank's workers, the total equals the single-process count" \
  '[[ "$out" == *"41 files (0.0 MiB, 1 gzip'"'"'d) under $tree, 6 workers on 3 ranks (2 + 2 + 2): $words words, 7 different"* ]]'
check "mpirun -np 3: progress up to 100% (a bar: mpirun gives rank 0 a terminal)" '[[ "$out" == *"100%  41 of 41 files"* ]]'
check "nothing left running" '[ -z "$(leftovers)" ]'

out=$(examples/word_count_mpi --top 6 --workers 2 "$tree" 2>&1)
rc=$?
check "alone: one rank, the same count" \
  '[ "$rc" -eq 0 ] && [[ "$out" == *"2 workers on 1 ranks (2): $words words, 7 different"* ]] &&
   [ "$(sed -n "/^top 6:$/,\$p" <<<"$out" | tail -n +2 | awk "{print \$1, \$2}")" = "$reference" ]'

mpi_run 3 examples/word_count_mpi "$scratch/missing"
check "mpirun -np 3: a missing folder ends the job with exit 1, named" \
  '[ "$rc" -eq 1 ] && [[ "$out" == *"no such folder: $scratch/missing"* ]]'
finish
