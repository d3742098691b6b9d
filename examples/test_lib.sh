# examples/test_lib.sh: sourced by the examples' tests (examples/*_test.sh).
#   run PROGRAM ARGS...   runs it; $out is its stdout, $err its stderr, $rc its exit code
#   check WHAT CONDITION  evaluates CONDITION; prints "ok: WHAT" or "FAILED: WHAT" (and the output of the last run)
#   finish                the test's exit status: 0 when every check passed; prints the "TEST-RESULT: P passed,
#                         F failed" line (one case per test) that CI's counting (.ci/count_tests.py) reads
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
  if [ "$failed" -eq 0 ]; then
    echo "all checks passed"
    echo "TEST-RESULT: 1 passed, 0 failed"
  else
    echo "TEST-RESULT: 0 passed, 1 failed"
  fi
  exit "$failed"
}
