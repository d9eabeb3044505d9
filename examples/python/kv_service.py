#!/usr/bin/env python3
"""kv_service.py — the Python original's use case on libsvc: a big
read-mostly dict loaded once, then served by worker processes that share it
copy-on-write, so callers (web workers, scripts) need not each hold a copy.

    python3 kv_service.py [NAME [PORT]]
        NAME: $SVC_SERVICE_NAME or "pykv"; PORT: $SVC_SERVICE_PORT or 5203
        KV_MB=256 (environment): megabytes of values to load

Listens on shm://NAME and tcp://127.0.0.1:PORT. Methods:
    get KEY     -> the value (HandlerError 1: no such key)
    count       -> the number of keys, in decimal
    info        -> JSON: this worker's pid, keys, RSS, PSS and private
                   memory in KiB

The data is read-only once the workers run: a write would change only the
copy of the worker that took it. Workers: 1 to 4 by CPU use, or what
svc-monitor's workers_min / workers_max say.
"""
import json
import os
import sys
import time

import svc

def value_of(i):
    """The value of key:i (64 to 448 bytes), so a caller can check it."""
    return b"%08d" % i * (8 + i % 7 * 8)


def load(megabytes):
    """The data as a dict that copy-on-write can share: str keys, and for
    each an int locating its value in one big bytes object. A dict of bytes
    values would not stay shared: every get writes its value's reference
    count, so each worker soon holds its own copy of every page a value
    lies in (measured in docs/python.md). Here a get writes only to a small
    int and to the blob's one header."""
    index, data, i = {}, bytearray(), 0
    while len(data) < megabytes << 20:
        v = value_of(i)
        index[f"key:{i}"] = len(data) << 16 | len(v)
        data += v
        i += 1
    return index, memoryview(data).toreadonly()


def memory_kib():
    """RSS, PSS and private memory of this process in KiB. PSS counts a page
    shared by k processes as 1/k; private pages are this worker's own (the
    ones copied since the fork)."""
    out = {}
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return {"rss_kib": out.get("Rss", 0), "pss_kib": out.get("Pss", 0),
            "private_kib": out.get("Private_Clean", 0)
            + out.get("Private_Dirty", 0)}


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "SVC_SERVICE_NAME", "pykv")
    port = sys.argv[2] if len(sys.argv) > 2 else os.environ.get(
        "SVC_SERVICE_PORT", "5203")
    t0 = time.monotonic()
    table, blob = load(int(os.environ.get("KV_MB", "256")))
    print(f"kv_service: {len(table)} keys, {len(blob) >> 20} MiB loaded in "
          f"{time.monotonic() - t0:.1f} s", flush=True)

    s = svc.Server(name)

    @s.method
    def get(key):
        where = table.get(str(key, "utf-8", "surrogateescape"))
        if where is None:
            raise svc.HandlerError(1)
        offset = where >> 16
        return blob[offset:offset + (where & 0xFFFF)]  # copied into the reply

    @s.method
    def count(_):
        return str(len(table)).encode()

    @s.method
    def info(_):
        return json.dumps({"pid": os.getpid(), "keys": len(table),
                           **memory_kib()}).encode()

    for url in (f"shm://{name}", f"tcp://127.0.0.1:{port}"):
        s.listen(url)
        print(f"kv_service: listening on {url}", flush=True)
    s.run(workers=(1, 4))  # forks here: the workers share `table`


if __name__ == "__main__":
    main()
