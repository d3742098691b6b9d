# ipc/pool/mpi/mpi_test_lib.sh: sourced by the MPI tests (and //examples:word_count_mpi_test).
#   mpi_run NP PROGRAM ARGS...   runs PROGRAM on NP ranks of this host under mpirun, bounded by $MPI_TIMEOUT
#                                seconds (default 240); $out is its stdout and stderr, $rc its exit code
#                                (124: it hung and was killed), $seconds how long it took
#   check WHAT CONDITION         evaluates CONDITION: "ok: WHAT", or "FAILED: WHAT" and the last run's output
#   leftovers                    the processes this test started that still run (every rank, fork server and
#                                worker carries the test's mark in its environment), after a few seconds' grace
#   finish                       prints "TEST-RESULT: P passed, F failed" (one case per check) and exits 0 or 1
set -u
passed=0
failed=0
# Open MPI keeps its session folder and sockets under TMPDIR; Bazel's deep TEST_TMPDIR makes socket paths too long.
export TMPDIR=/tmp
# Every process a run starts (mpirun, ranks, fork servers, workers) inherits this mark: leftovers finds them.
mark="ipc-mpi-test-$$-$RANDOM"
# Open MPI refuses root unless told (CI runs as root).
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
command -v mpirun >/dev/null || { echo "FAILED: no mpirun (apt-get install openmpi-bin libopenmpi-dev)"; echo "TEST-RESULT: 0 passed, 1 failed"; exit 1; }

mpi_run() {
  local np=$1; shift
  local t0=$SECONDS
  # --oversubscribe: more ranks than cores on a small host; --bind-to none: a rank bound to one core would bind
  # its whole local pool there (the workers inherit its affinity).
  out=$(IPC_MPI_TEST_MARK=$mark timeout --kill-after=10 "${MPI_TIMEOUT:-240}" \
          mpirun --oversubscribe --bind-to none -np "$np" -x IPC_MPI_TEST_MARK "$@" 2>&1)
  rc=$?
  seconds=$((SECONDS - t0))
}

check() {
  if eval "$2"; then
    echo "ok: $1"
    passed=$((passed + 1))
  else
    echo "FAILED: $1"
    printf -- '--- exit code %s after %s s; output:\n%s\n---\n' "$rc" "${seconds:-?}" "$out"
    failed=$((failed + 1))
  fi
}

leftovers() {
  local pids
  for _ in $(seq 1 50); do
    pids=$(grep -lsa "IPC_MPI_TEST_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
    [ -z "$pids" ] && return 0
    sleep 0.1
  done
  for p in $pids; do ps -o pid=,ppid=,comm=,args= -p "$p"; done
}

finish() {
  echo "TEST-RESULT: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}
