"""Helpers of the binding's tests: free ports, one URL per transport,
unique service names, waiting for a condition."""
import os
import socket
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(kind):
    return f"py{os.getpid()}{kind}{time.monotonic_ns() % 1000000}"


def url_for(kind, name, rundir):
    return {"shm": f"shm://{name}",
            "unix": f"unix://{rundir}/{name}.sock",
            "tcp": f"tcp://127.0.0.1:{free_port()}"}[kind]


def wait_for(what, fn, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
