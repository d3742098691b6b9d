# examples/word_count_tree.sh: sourced by the word count tests (word_count_test.sh, word_count_mpi_test.sh).
#   make_tree DIR    41 files in three folders of DIR whose words have known counts, one of them gzip'd
#   $known           the top 6 "COUNT word" lines such a tree must give
#   reference DIR    the top 6 of DIR counted by one process with coreutils (find | tr | sort | uniq -c)
#   reference_words DIR   the number of words in DIR, counted the same way
# Per file: beta 13, alpha 10, gamma 5, delta 3, epsilon 3 (a tie, broken alphabetically), file 1; in mixed case,
# split by punctuation and digits. The gzip'd file holds "Zeta" 3 times: seven different words in all.
make_tree() {
  local tree=$1 i dir
  mkdir -p "$tree/a/b" "$tree/c"
  for i in $(seq 1 40); do
    dir=$tree; [ $((i % 3)) -eq 1 ] && dir=$tree/a/b; [ $((i % 3)) -eq 2 ] && dir=$tree/c
    {
      for _ in 1 2 3 4 5; do echo "Alpha alpha, beta-BETA; gamma"; done
      echo "beta2beta3beta (file $i) DELTA delta delta epsilon.epsilon.epsilon"
    } > "$dir/file$i.txt"
  done
  printf 'Zeta, zeta ZETA' | gzip > "$tree/c/notes.gz"
}
known=$'520 beta\n400 alpha\n200 gamma\n120 delta\n120 epsilon\n40 file'
tree_words() {
  { find "$1" -type f ! -name '*.gz' -exec cat {} +; echo; find "$1" -type f -name '*.gz' -exec zcat {} +; } |
    LC_ALL=C tr -cs 'A-Za-z' '\n' | grep -v '^$'
}
reference() {
  tree_words "$1" | LC_ALL=C tr 'A-Z' 'a-z' | LC_ALL=C sort | uniq -c | LC_ALL=C sort -k1,1nr -k2,2 | head -n 6 |
    awk '{print $1, $2}'
}
reference_words() { tree_words "$1" | wc -l; }
