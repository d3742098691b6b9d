#!/usr/bin/env bash
# //ipc/pool/mpi:pool_test: the Catch2 program pool_test.cc under mpirun on 3 ranks of this host, on 1 rank, and
# alone (no mpirun: a local pool). Each Catch2 test case counts; no Open MPI warning (a fork after MPI_Init would
# bring one); nothing left running after the job.
source ipc/pool/mpi/mpi_test_lib.sh
program=$1

# Adds the Catch2 case counts of the last run to the totals; a run without a summary is one failed case.
count_cases() {
  local what=$1 summary
  summary=$(grep -E "^(All tests passed|test cases:)" <<<"$out" | tail -n 1)
  if [[ "$summary" =~ All\ tests\ passed\ \(.*\ in\ ([0-9]+)\ test\ case ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    echo "ok: $what: $summary"
  elif [[ "$summary" =~ test\ cases:\ *([0-9]+)\ \|\ *([0-9]+)\ passed\ \|\ *([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[2]))
    failed=$((failed + BASH_REMATCH[3]))
    echo "FAILED: $what: $summary"
    echo "$out"
  else
    failed=$((failed + 1))
    echo "FAILED: $what: no Catch2 summary (exit code $rc after $seconds s)"
    echo "$out"
  fi
}

mpi_run 3 "$program" --use-colour no
count_cases "mpirun -np 3"
check "mpirun -np 3 exits 0" '[ "$rc" -eq 0 ]'
check "no Open MPI warning about fork() or anything else" '! grep -qiE "fork\(\)|warning" <<<"$out"'
check "nothing left running after mpirun -np 3" '[ -z "$(leftovers)" ]'

mpi_run 1 "$program" --use-colour no
count_cases "mpirun -np 1"

t0=$SECONDS
out=$(IPC_MPI_TEST_MARK=$mark timeout --kill-after=10 240 "$program" --use-colour no 2>&1)
rc=$?
seconds=$((SECONDS - t0))
count_cases "alone (no mpirun)"
check "nothing left running after the runs" '[ -z "$(leftovers)" ]'
finish
