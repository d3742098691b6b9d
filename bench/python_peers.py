#!/usr/bin/env python3
"""Python multiprocessing peers for //bench:all. Usage: python_peers.py NAME [ARGS...].

Prints one number on its last line (the unit is stated per peer below); the C++ harness reads it.
"""
import sys
import time
import multiprocessing as mp


def _drain(q, n):
    for _ in range(n):
        q.get()


def queue_msgs_per_s(n=200000):
    """multiprocessing.Queue, 1 producer process -> 1 consumer process, 8-byte ints: msgs/s."""
    n = int(n)
    q = mp.Queue(maxsize=10000)
    c = mp.Process(target=_drain, args=(q, n))
    c.start()
    t = time.perf_counter()
    for i in range(n):
        q.put(i)
    c.join()
    return n / (time.perf_counter() - t)


def _pipe_drain(conn, n):
    for _ in range(n):
        conn.recv_bytes()


def pipe_msgs_per_s(n=200000):
    """multiprocessing.Pipe, 8-byte messages one way: msgs/s."""
    n = int(n)
    a, b = mp.Pipe()
    c = mp.Process(target=_pipe_drain, args=(b, n))
    c.start()
    t = time.perf_counter()
    payload = b"12345678"
    for _ in range(n):
        a.send_bytes(payload)
    c.join()
    return n / (time.perf_counter() - t)


def _inc(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def value_incs_per_s(n=100000):
    """multiprocessing.Value('q') incremented under its lock by 2 processes: increments/s."""
    n = int(n)
    v = mp.Value("q", 0)
    ps = [mp.Process(target=_inc, args=(v, n)) for _ in range(2)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return 2 * n / (time.perf_counter() - t)


PEERS = {
    "queue": queue_msgs_per_s,
    "pipe": pipe_msgs_per_s,
    "value": value_incs_per_s,
}

sys.path.insert(0, __file__.rsplit("/", 1)[0])  # the Manager and Pool peers live beside this file
try:
    from python_peers_manager import manager_dict, manager_dict_tcp  # noqa: E402
    PEERS["manager_dict"] = manager_dict
    PEERS["manager_dict_tcp"] = manager_dict_tcp
except ImportError:
    pass
try:
    from python_peers_listener import LISTENER_PEERS  # noqa: E402
    PEERS.update(LISTENER_PEERS)
except ImportError:
    pass
try:
    from python_peers_pool import POOL_PEERS  # noqa: E402
    PEERS.update(POOL_PEERS)
except ImportError:
    pass


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in PEERS:
        sys.exit("usage: python_peers.py {%s} [ARGS...]" % ",".join(sorted(PEERS)))
    print(PEERS[sys.argv[1]](*sys.argv[2:]))
