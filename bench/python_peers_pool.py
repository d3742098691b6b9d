"""Python peers for the pool rows of //bench:all (wired into python_peers.py; see POOL_PEERS).

Every pool is made with the fork start method, as ipc::Pool forks its workers by default; pool_start_stop_rounds
also takes forkserver and spawn, beside ipc::Pool's kForkServer and kExec. pool_map and pool_apply_async measure once
(the C++ side calls each several times, each in a fresh interpreter, for the median and the spread);
pool_start_stop_rounds prints every round of one fresh interpreter and its footprint, as bench/pool_start_stop
--rounds does for ipc::Pool.
"""
import multiprocessing as mp
import time

_FORK = mp.get_context("fork")


def _inc(x):
    return x + 1


def pool_map(n=1000000, chunksize=0, workers=2):
    """Pool(workers).map(x -> x + 1) over a list of n ints; chunksize 0 = Python's default: tasks/s."""
    n, chunksize, workers = int(n), int(chunksize), int(workers)
    items = list(range(n))
    with _FORK.Pool(workers) as pool:
        pool.map(_inc, range(4 * workers))  # the workers are running
        t = time.perf_counter()
        out = pool.map(_inc, items, chunksize=chunksize) if chunksize else pool.map(_inc, items)
        dt = time.perf_counter() - t
    assert out[-1] == n
    return n / dt


def pool_apply_async(n=20000, workers=2):
    """n x apply_async(x -> x + 1), then get() each: tasks/s."""
    n, workers = int(n), int(workers)
    with _FORK.Pool(workers) as pool:
        pool.map(_inc, range(4 * workers))
        t = time.perf_counter()
        futures = [pool.apply_async(_inc, (i,)) for i in range(n)]
        out = [f.get() for f in futures]
        dt = time.perf_counter() - t
    assert out[-1] == n
    return n / dt


def _footprint():
    """VmRSS and VmSize (kB) of this interpreter, and its count of mappings: what a fork copies page tables of."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    with open("/proc/self/maps") as f:
        mappings = sum(1 for _ in f)
    return fields.get("VmRSS", "0"), fields.get("VmSize", "0"), mappings


def pool_start_stop_rounds(workers=2, method="fork", rounds=10):
    """As bench/pool_start_stop --rounds: one untimed round, then `rounds` rounds in this interpreter, each printed
    as "ms <milliseconds>", after "footprint <VmRSS kB> <VmSize kB> <mappings>" taken just before the first timed
    Pool forks. Returns the round count."""
    workers, rounds = int(workers), int(rounds)
    context = mp.get_context(method)

    def once():
        t = time.perf_counter()
        pool = context.Pool(workers)
        pool.map(_inc, [1])
        pool.close()
        pool.join()
        return time.perf_counter() - t

    once()
    for i in range(rounds):
        if i == 0:
            print("footprint %s %s %d" % _footprint())
        print("ms %.4f" % (once() * 1e3), flush=True)
    return "rounds %d" % rounds


POOL_PEERS = {
    "pool_map": pool_map,
    "pool_apply_async": pool_apply_async,
    "pool_start_stop_rounds": pool_start_stop_rounds,
}
