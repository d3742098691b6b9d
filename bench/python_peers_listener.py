"""Python peers for the Listener rows of //bench:all (wired into python_peers.py): multiprocessing.connection
Listener/Client between this process and a separate Python program (subprocess, not a fork), as the C++ rows
use an exec'd client."""
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Client, Listener

KEY = b"benchmark key, 32 bytes long...."


def _serve(n, size, echo):
    d = tempfile.mkdtemp(prefix="numa_mp-pybench-")
    address = os.path.join(d, "s.sock")
    try:
        with Listener(address, family="AF_UNIX", authkey=KEY) as listener:
            child = subprocess.Popen([sys.executable, __file__, "client", address, str(n), str(size),
                                      "echo" if echo else "send"])
            with listener.accept() as conn:
                if echo:
                    payload = b"12345678"
                    t = time.perf_counter()
                    for _ in range(n):
                        conn.send_bytes(payload)
                        conn.recv_bytes()
                    result = (time.perf_counter() - t) / n * 1e9
                else:
                    t = time.perf_counter()
                    for _ in range(n):
                        conn.recv_bytes()
                    result = n / (time.perf_counter() - t)
            child.wait()
            return result
    finally:
        if os.path.exists(address):
            os.unlink(address)
        os.rmdir(d)


def listener_one_way(n=100000, size=8):
    """Client -> Listener, n messages of `size` bytes (send_bytes/recv_bytes): msgs/s."""
    return _serve(int(n), int(size), echo=False)


def listener_round_trip(n=20000):
    """Listener -> Client -> Listener, 8-byte messages: ns per round trip."""
    return _serve(int(n), 8, echo=True)


def _client(address, n, size, mode):
    n, size = int(n), int(size)
    with Client(address, family="AF_UNIX", authkey=KEY) as conn:
        if mode == "echo":
            for _ in range(n):
                conn.send_bytes(conn.recv_bytes())
        else:
            payload = b"x" * size
            for _ in range(n):
                conn.send_bytes(payload)


LISTENER_PEERS = {"listener_one_way": listener_one_way, "listener_round_trip": listener_round_trip}

if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "client":
        _client(*sys.argv[2:])
    else:
        print(LISTENER_PEERS[sys.argv[1]](*sys.argv[2:]))
