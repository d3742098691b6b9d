#!/usr/bin/env bash
# bench/mpi_pool_bench.sh: //bench:mpi_pool_bench. Runs mpi_pool_bench_program under mpirun on 1 rank and on 3 ranks
# of this host (each run also measures the local ipc::Pool, same options) and prints the figures side by side, with
# the cost MPI adds to a chunk: a remote rank's round trip minus the local pool's, and the same from the
# chunksize-1 map's tasks/s. Options go to the program (--workers N per rank, default 2; --reps N, default 5).
#   ./bazelw run --config=mpi //bench:mpi_pool_bench [-- --workers 2 --reps 5]
set -uo pipefail
here=$(dirname "$0")
program="$here/mpi_pool_bench_program"
[ -x "$program" ] || program="${RUNFILES_DIR:-$0.runfiles}/numa_mp/bench/mpi_pool_bench_program"
export TMPDIR=/tmp
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
command -v mpirun >/dev/null || { echo "no mpirun: apt-get install openmpi-bin libopenmpi-dev" >&2; exit 1; }

results=""
for np in 1 3; do
  echo "running on $np rank(s): mpirun --oversubscribe --bind-to none -np $np mpi_pool_bench_program $*" >&2
  out=$(mpirun --oversubscribe --bind-to none -np "$np" "$program" "$@" 2>&1) || { echo "$out" >&2; exit 1; }
  # The local pool's figures from the 1-rank run only (the 3-rank run measures it again, beside idle ranks).
  results+=$(grep '^RESULT' <<<"$out" | { [ "$np" -eq 1 ] && cat || grep -v $'\tlocal ipc::Pool\t'; })$'\n'
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
python3 - "$results" <<'PY'
import sys
rows, pools = {}, []
for line in sys.argv[1].splitlines():
    if not line.startswith("RESULT"):
        continue
    _, figure, pool, value, unit = line.split("\t")
    rows.setdefault(figure, {})[pool] = (float(value), unit)
    if pool not in pools:
        pools.append(pool)
width = max(len(f) for f in rows) + 2
print(f"{'':<{width}}" + "".join(f"{p:>32}" for p in pools))
for figure, by_pool in rows.items():
    cells = "".join(f"{by_pool[p][0]:>22,.0f} {by_pool[p][1]:<9}" if p in by_pool else f"{'-':>32}" for p in pools)
    print(f"{figure:<{width}}{cells}")
local, three = "local ipc::Pool", "ipc::mpi::Pool, 3 ranks"
rt = rows.get("apply().get() round trip, another rank's workers", {}).get(three)
base = rows["apply().get() round trip, rank 0's workers"][local]
if rt:
    print(f"MPI overhead per chunk, round trip: {rt[0] - base[0]:,.0f} us "
          f"(another rank's workers {rt[0]:,.0f} us, the local pool's {base[0]:,.0f} us)")
one = rows["map of 20k x -> x+1, chunksize 1"]
for pool in pools[1:]:
    extra = 1e6 / one[pool][0] - 1e6 / one[local][0]
    print(f"MPI cost per chunk in the chunksize-1 map, {pool}: {extra:+.1f} us "
          f"({1e6 / one[pool][0]:.1f} us per chunk, the local pool {1e6 / one[local][0]:.1f} us)")
PY
