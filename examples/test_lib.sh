# examples/test_lib.sh: sourced by the examples' tests (examples/*_test.sh).
#   run PROGRAM ARGS...   runs it; $out is its stdout, $err its stderr, $rc its exit code
#   check WHAT CONDITION  evaluates CONDITION; prints "ok: WHAT" or "FAILED: WHAT" (and the output of the last run)
#   finish                the test's exit status: 0 when every check passed
set -u
failed=0
scratch=$(mktemp -d "${TEST_TMPDIR:-/tmp}/example.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

run() {
  out=$("$@" 2>"$scratch/stderr")
  rc=$?
  err=$(<"$scratch/stderr")
}

check() {
  if eval "$2"; then
    echo "ok: $1"
  else
    echo "FAILED: $1"
    printf -- '--- exit code %s; stdout:\n%s\n--- stderr:\n%s\n---\n' "$rc" "$out" "$err"
    failed=1
  fi
}

finish() {
  [ "$failed" -eq 0 ] && echo "all checks passed"
  exit "$failed"
}
