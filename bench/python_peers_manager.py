"""Python peer for the Manager rows of //bench:all (wired into python_peers.py as `manager_dict`)."""
import multiprocessing as mp
import time


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


if __name__ == "__main__":
    import sys
    print(manager_dict(*sys.argv[1:]))
