"""Python peers for the Manager rows of //bench:all (wired into python_peers.py as `manager_dict` and
`manager_dict_tcp`)."""
import multiprocessing as mp
import time
from multiprocessing.managers import SyncManager


def _seconds_per_pair(manager, n):
    """One set + one get from one client on `manager`'s dict, round trips: seconds per pair."""
    d = manager.dict()
    for i in range(200):  # warm-up: connection set-up and first-call costs
        d["key"] = i
        d["key"]
    t = time.perf_counter()
    for i in range(n):
        d["key"] = i
        d["key"]
    return (time.perf_counter() - t) / n


def manager_dict(n=20000):
    """multiprocessing.Manager().dict() (a Unix socket): seconds per set + get pair."""
    with mp.Manager() as manager:
        return _seconds_per_pair(manager, int(n))


def manager_dict_tcp(n=20000):
    """The same with the Manager on TCP 127.0.0.1 (a port it picks) instead of a Unix socket."""
    with SyncManager(address=("127.0.0.1", 0)) as manager:
        return _seconds_per_pair(manager, int(n))


if __name__ == "__main__":
    import sys
    print(manager_dict(*sys.argv[1:]))
