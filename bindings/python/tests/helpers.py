"""Helpers of the binding's tests: free ports, one URL per transport,
unique service names, waiting for a condition."""
import os
import socket
import threading
import time

import svc


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


def peer_gone_after(client, kill):
    """Seconds from kill() to the PeerGone of a call that was waiting in a
    slow handler (the server's "sleep" method): a killed server must be
    noticed at once, not at the call's timeout."""
    client.call("echo", b"up")
    done = {}

    def call():
        try:
            client.call("sleep", b"5000")
        except svc.Error as e:
            done["exc"], done["at"] = e, time.monotonic()

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.2)  # the call is in the handler now
    killed = time.monotonic()
    kill()
    t.join(5)
    assert isinstance(done.get("exc"), svc.PeerGone), done
    return done["at"] - killed
