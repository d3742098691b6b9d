"""Python peers for the Manager rows of //bench:all (wired into python_peers.py as `manager_dict` and
`manager_dict_tcp`)."""
import multiprocessing as mp
import time
from multiprocessing.managers import SyncManager


def manager_dict(n=20000):
    """multiprocessing.Manager().dict(): one set + one get from one client, round trips: seconds per pair."""
    n = int(n)
    with mp.Manager() as manager:
        d = manager.dict()
        for i in range(200):  # warm-up: connection set-up and first-call costs
            d["key"] = i
            d["key"]
        t = time.perf_counter()
        for i in range(n):
            d["key"] = i
            d["key"]
        return (time.perf_counter() - t) / n


def manager_dict_tcp(n=20000):
    """The same as manager_dict, with the Manager on TCP 127.0.0.1 (a port it picks) instead of a Unix socket."""
    n = int(n)
    with SyncManager(address=("127.0.0.1", 0)) as manager:
        d = manager.dict()
        for i in range(200):
            d["key"] = i
            d["key"]
        t = time.perf_counter()
        for i in range(n):
            d["key"] = i
            d["key"]
        return (time.perf_counter() - t) / n


if __name__ == "__main__":
    import sys
    print(manager_dict(*sys.argv[1:]))
