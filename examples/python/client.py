#!/usr/bin/env python3
"""client.py — calls kv_service.py: checks a few values, times get, and
shows each worker's memory (PSS far below RSS: the data is shared). With
--forever it keeps a steady load for the demo's dashboard, reconnecting
when the service restarts.

    python3 client.py [URL] [--forever] [--rate CALLS_PER_S]
        URL: shm://pykv by default
"""
import argparse
import json
import random
import sys
import time

import svc


def report(url):
    with svc.Client(url, timeout=5) as c:
        keys = int(c.call("count"))
        for i in (0, keys // 2, keys - 1):
            assert c.call("get", b"key:%d" % i) == b"%08d" % i * (8 + i % 7 * 8)
        try:
            c.call("get", b"no such key")
        except svc.HandlerError as e:
            print(f"missing key: HandlerError, code {e.handler_code}")
        n, t0 = 20000, time.perf_counter()
        for _ in range(n):
            c.call("get", b"key:%d" % random.randrange(keys))
        per_call = (time.perf_counter() - t0) / n * 1e6
        print(f"{keys} keys; get from Python: {per_call:.2f} µs per call "
              f"(mean of {n})")
    # New connections spread over the workers: show each one's memory.
    seen = {}
    clients = [svc.Client(url, timeout=5) for _ in range(8)]
    for c in clients:
        w = json.loads(c.call("info"))
        seen[w["pid"]] = w
        c.close()
    for w in seen.values():
        print(f"worker {w['pid']}: RSS {w['rss_kib'] / 1024:.0f} MiB, "
              f"PSS {w['pss_kib'] / 1024:.0f} MiB, its own "
              f"{w['private_kib'] / 1024:.0f} MiB")


def forever(url, rate):
    c, ok, failed, last = None, 0, 0, time.monotonic()
    keys = 0
    while True:
        try:
            if c is None:
                c = svc.Client(url, timeout=2)
                keys = int(c.call("count"))
            c.call("get", b"key:%d" % random.randrange(keys))
            ok += 1
        except svc.Error as e:
            failed += 1
            print(f"client: {e.name}; reconnecting", file=sys.stderr,
                  flush=True)
            c = None
            time.sleep(1)
        time.sleep(1 / rate)
        if time.monotonic() - last >= 10:
            print(f"client: ok={ok} failed={failed}", flush=True)
            last = time.monotonic()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", nargs="?", default="shm://pykv")
    ap.add_argument("--forever", action="store_true")
    ap.add_argument("--rate", type=float, default=200)
    a = ap.parse_args()
    if a.forever:
        forever(a.url, a.rate)
    else:
        report(a.url)


if __name__ == "__main__":
    main()
