#!/usr/bin/env bash
# //ipc/pool/mpi:rank_death_test: a rank that dies ends the whole job, never a hang. Open MPI's mpirun sees the
# death, names the rank and the signal, and kills the other ranks; their fork servers and workers die with them
# (daemon children). Rank 0 calling exit() ends the serving ranks cleanly (ipc::mpi's atexit shutdown) with its
# status. Each run on 3 ranks of this host, bounded (a hang would show as exit code 124). And a job whose ranks
# run different programs: the pool refuses to open, naming the rank.
source ipc/pool/mpi/mpi_test_lib.sh
program=$1
other_program=$2
export MPI_TIMEOUT=90

mpi_run 3 "$program" ok
check "ok: exit 0 after the map" '[ "$rc" -eq 0 ] && [[ "$out" == *"rank 0: done (30 results)"* ]]'
check "ok: nothing left running" '[ -z "$(leftovers)" ]'

mpi_run 3 "$program" kill-serving
check "kill-serving: the job ends, not 0, in time" '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$seconds" -lt 60 ]'
check "kill-serving: mpirun names rank 1 and SIGKILL" '[[ "$out" == *"process rank 1 "*"exited on signal 9"* ]]'
check "kill-serving: rank 0 never went on" '[[ "$out" != *"still running"* ]]'
check "kill-serving: nothing left running (ranks, fork servers, workers)" '[ -z "$(leftovers)" ]'

mpi_run 3 "$program" abort-serving
check "abort-serving: the job ends, not 0, in time" '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$seconds" -lt 60 ]'
check "abort-serving: mpirun names rank 1 and SIGABRT" '[[ "$out" == *"process rank 1 "*"exited on signal 6"* ]]'
check "abort-serving: nothing left running" '[ -z "$(leftovers)" ]'

mpi_run 3 "$program" term-serving-idle
check "term-serving-idle: the job ends while rank 0 sleeps" \
  '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$seconds" -lt 50 ] && [[ "$out" != *"still running"* ]]'
check "term-serving-idle: mpirun names rank 2 and SIGTERM" '[[ "$out" == *"process rank 2 "*"exited on signal 15"* ]]'
check "term-serving-idle: nothing left running" '[ -z "$(leftovers)" ]'

mpi_run 3 "$program" kill-root
check "kill-root: the job ends, not 0, in time" '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$seconds" -lt 60 ]'
check "kill-root: mpirun names rank 0 and SIGKILL" '[[ "$out" == *"process rank 0 "*"exited on signal 9"* ]]'
check "kill-root: nothing left running" '[ -z "$(leftovers)" ]'

mpi_run 3 "$program" exit-root
check "exit-root: the job ends with rank 0's status 3, without waiting for the 20 s tasks" \
  '[ "$rc" -eq 3 ] && [ "$seconds" -lt 15 ] && [[ "$out" == *"exit(3) with every rank busy"* ]]'
check "exit-root: the other ranks ended cleanly (no \"exiting improperly\")" '[[ "$out" != *"improperly"* ]]'
check "exit-root: nothing left running" '[ -z "$(leftovers)" ]'

mpi_run 1 "$program" ok : -np 1 "$other_program"
check "another program on rank 1: the pool refuses to open, naming the rank" \
  '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [[ "$out" == *"rank 1: this rank runs another program"* ]]'
check "another program on rank 1: nothing left running" '[ -z "$(leftovers)" ]'
finish
