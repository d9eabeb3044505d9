"""The Python counterpart of tests/helpers/test_server.c, for the tests of
svc.Server: listens on the URLs given, prints READY once bound, then serves
until SIGTERM (with worker processes if asked).

    py_server.py NAME URL... [--workers MIN MAX] [--max-msg BYTES]
                 [--data N]

--data N loads a dict of N entries before run(), which the workers share
copy-on-write ("count" returns its size).
"""
import argparse
import os
import sys
import threading
import time

import svc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--workers", nargs=2, type=int)
    ap.add_argument("--max-msg", type=int, default=0)
    ap.add_argument("--data", type=int, default=0)
    args = ap.parse_args()

    table = {str(i).encode(): str(i * i).encode() for i in range(args.data)}
    kept = []
    s = svc.Server(args.name, max_msg=args.max_msg)

    @s.method("echo")
    def echo(req):
        return req  # the request's own view: copied into the reply

    @s.method
    def fail(req):  # answers with the application code in the request
        raise svc.HandlerError(int(bytes(req)))

    @s.method
    def boom(req):
        raise ValueError("boom: " + bytes(req).decode())

    @s.method
    def sleep(req):  # milliseconds; time.sleep lets other handlers run
        time.sleep(int(bytes(req)) / 1000)
        return b"ok"

    @s.method
    def spin(req):  # CPU-bound pure Python for that many iterations
        n, x = int(bytes(req)), 0
        for i in range(n):
            x += i * i
        return str(x).encode()

    @s.method
    def span(req):  # spin, then say who ran it, when, and on how much CPU
        n, x = int(bytes(req)), 0
        t0, c0 = time.monotonic(), time.thread_time()
        for i in range(n):
            x += i * i
        t1, c1 = time.monotonic(), time.thread_time()
        return f"{os.getpid()} {t0} {t1} {c1 - c0}".encode()

    @s.method
    def pid(req):
        return str(os.getpid()).encode()

    @s.method
    def count(req):
        return str(len(table)).encode()

    @s.method
    def get(req):
        v = table.get(bytes(req))
        if v is None:
            raise svc.HandlerError(1)
        return v

    @s.method
    def keep(req):  # keeps the request view past the handler's return
        kept.append(req)
        return b"kept"

    @s.method
    def keep_slice(req):  # a view made from the request, kept: an error
        kept.append(req[1:])
        return b"kept"

    @s.method
    def kept_state(req):
        try:
            bytes(kept[-1])
            return b"readable"
        except ValueError:  # "operation forbidden on released memoryview"
            return b"released"

    @s.method
    def returns(req):
        kind = bytes(req)
        return {b"none": None, b"bytearray": bytearray(b"ba"),
                b"memoryview": memoryview(b"xmvx")[1:3],
                b"str": "not bytes"}[kind]

    @s.method
    def big(req):
        return bytes(int(bytes(req)))

    @s.method
    def threads(req):
        return str(threading.active_count()).encode()

    for url in args.urls:
        s.listen(url)
    print("READY", flush=True)
    s.run(workers=tuple(args.workers) if args.workers else None)
    print("STOPPED", flush=True)


if __name__ == "__main__":
    sys.exit(main())
