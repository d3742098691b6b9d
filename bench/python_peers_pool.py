"""Python peers for the pool rows of //bench:all (wired into python_peers.py; see POOL_PEERS).

Every pool is made with the fork start method, as ipc::Pool forks its workers by default; pool_start_stop also
takes forkserver and spawn, beside ipc::Pool's kForkServer and kExec. Each call measures once (the
C++ side calls it several times, each in a fresh interpreter, for the median and the spread).
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


def pool_start_stop(workers=2, method="fork"):
    """Pool(workers) with start method `method` (fork, forkserver, spawn): start, map of one item, close, join:
    seconds (after one untimed round for the imports and, for forkserver, the server's start)."""
    workers = int(workers)
    context = mp.get_context(method)

    def once():
        t = time.perf_counter()
        pool = context.Pool(workers)
        pool.map(_inc, [1])
        pool.close()
        pool.join()
        return time.perf_counter() - t

    once()
    return once()


POOL_PEERS = {
    "pool_map": pool_map,
    "pool_apply_async": pool_apply_async,
    "pool_start_stop": pool_start_stop,
}
