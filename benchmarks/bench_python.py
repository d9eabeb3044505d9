#!/usr/bin/env python3
"""bench_python.py — issue 13's rows: echo round trips from Python through
the svc binding (to a C server and to a Python server, over shm:// and
tcp://), next to what a Python user has without it (multiprocessing.Pipe
and a socket.socketpair echo between two Python processes) and to C -> C
(`svc bench` against the same C server), all in one run, rows interleaved.
Writes Google-Benchmark-shaped JSON that report.py reads (kind "python").

usage: bench_python.py --build-dir DIR --out FILE [--seconds S] [--reps N]

Each measurement calls in batches sized to take about 200 µs and records
the mean call of each batch: p50 is the median batch, mean the total time
over all calls. CPU per call: the client's own (process time; for C -> C
the child `svc bench` process) and the server's (/proc/PID/stat), divided
by the calls.
"""
import argparse
import json
import multiprocessing
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time

SIZES = [64, 1 << 20]
ROWS = ["c-c-shm", "py-c-shm", "py-c-tcp", "py-py-shm", "py-py-tcp",
        "mp-pipe", "socketpair"]
MAX_MSG = 4 << 20


def proc_cpu_ns(pid):
    """utime + stime of pid in ns (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return (int(fields[11]) + int(fields[12])) * 10**9 // os.sysconf("SC_CLK_TCK")


def measure(round_trips, seconds, server_pid):
    """Times round_trips(n) (n calls) for `seconds`: dict of the row's
    counters."""
    perf = time.perf_counter_ns
    warm_end = perf() + min(0.1, seconds / 5) * 1e9
    while perf() < warm_end:
        round_trips(1)
    n = 1
    while n < 4096:  # a batch of about 200 µs
        t0 = perf()
        round_trips(n)
        if perf() - t0 > 200_000:
            break
        n *= 2
    samples, calls = [], 0
    cpu0, srv0, t_start = time.process_time_ns(), proc_cpu_ns(server_pid), perf()
    end = t_start + seconds * 1e9
    while True:
        t0 = perf()
        round_trips(n)
        t1 = perf()
        samples.append((t1 - t0) / n)
        calls += n
        if t1 >= end:
            break
    wall = perf() - t_start
    cpu = time.process_time_ns() - cpu0
    srv = proc_cpu_ns(server_pid) - srv0
    samples.sort()
    return {"p50_us": samples[len(samples) // 2] / 1e3,
            "mean_us": wall / calls / 1e3,
            "client_cpu_us": cpu / calls / 1e3,
            "server_cpu_us": srv / calls / 1e3,
            "iterations": calls}


# ---- servers ----

def serve_python(name, port):
    """The Python echo server (run as: bench_python.py --serve NAME PORT)."""
    import svc
    s = svc.Server(name, max_msg=MAX_MSG)

    @s.method
    def echo(req):
        return req

    s.listen(f"shm://{name}")
    s.listen(f"tcp://127.0.0.1:{port}")
    s.run()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc):
    import svc
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited")
        try:
            svc.Client(url).call("svc.ping")
            return
        except svc.Error:
            time.sleep(0.02)
    raise RuntimeError(f"no server at {url}")


class Servers:
    def __init__(self, build):
        tag = f"pyb{os.getpid()}"
        self.c_name, self.c_port = f"{tag}c", free_port()
        self.py_name, self.py_port = f"{tag}py", free_port()
        self.procs = []
        try:
            self.c = self.spawn(
                [os.path.join(build, "examples", "echo_server"), self.c_name,
                 str(self.c_port)])
            self.py = self.spawn(
                [sys.executable, os.path.abspath(__file__), "--serve",
                 self.py_name, str(self.py_port)])
            wait_ready(f"shm://{self.c_name}", self.c)
            wait_ready(f"shm://{self.py_name}", self.py)
        except BaseException:
            self.close()
            raise

    def spawn(self, argv):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            p.terminate()
            p.wait(10)


# ---- the rows ----

def svc_rows(servers, size):
    import svc
    req = os.urandom(size)
    urls = {"py-c-shm": (f"shm://{servers.c_name}", servers.c.pid),
            "py-c-tcp": (f"tcp://127.0.0.1:{servers.c_port}", servers.c.pid),
            "py-py-shm": (f"shm://{servers.py_name}", servers.py.pid),
            "py-py-tcp": (f"tcp://127.0.0.1:{servers.py_port}", servers.py.pid)}
    rows = {}
    for row, (url, pid) in urls.items():
        c = svc.Client(url, timeout=10, max_msg=MAX_MSG)

        def round_trips(n, call=c.call, req=req):
            for _ in range(n):
                call("echo", req)
        rows[row] = (round_trips, pid, c)
    return rows


def echo_pipe(conn):
    while True:
        try:
            conn.send_bytes(conn.recv_bytes())
        except EOFError:
            return


def recv_exactly(sock, buf, view):
    got = 0
    while got < len(buf):
        k = sock.recv_into(view[got:])
        if not k:
            raise EOFError
        got += k


def echo_socket(sock, size):
    buf = bytearray(size)
    view = memoryview(buf)
    try:
        while True:
            recv_exactly(sock, buf, view)
            sock.sendall(buf)
    except (EOFError, OSError):
        return


def baseline_rows(size):
    ctx = multiprocessing.get_context("fork")
    req = os.urandom(size)
    rows, procs = {}, []

    a, b = ctx.Pipe()
    p = ctx.Process(target=echo_pipe, args=(b,), daemon=True)
    p.start()
    b.close()
    procs.append(p)

    def pipe_trips(n, send=a.send_bytes, recv=a.recv_bytes, req=req):
        for _ in range(n):
            send(req)
            recv()
    rows["mp-pipe"] = (pipe_trips, p.pid, a)

    s1, s2 = socket.socketpair()
    q = ctx.Process(target=echo_socket, args=(s2, size), daemon=True)
    q.start()
    s2.close()
    procs.append(q)
    buf = bytearray(size)
    view = memoryview(buf)

    def sock_trips(n, s=s1, req=req):
        for _ in range(n):
            s.sendall(req)
            recv_exactly(s, buf, view)
    rows["socketpair"] = (sock_trips, q.pid, s1)
    return rows, procs


UNITS = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def c_to_c(build, servers, size, seconds):
    """`svc bench` (C) against the C server: its avg and p50."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv0 = proc_cpu_ns(servers.c.pid)
    out = subprocess.run(
        [os.path.join(build, "tools", "svc"), "bench",
         f"shm://{servers.c_name}", "echo", "-c", "1", "-d", str(seconds),
         "-s", str(size)], capture_output=True, text=True, timeout=120).stdout
    srv = proc_cpu_ns(servers.c.pid) - srv0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    calls = int(re.search(r"calls\s+(\d+)", out).group(1))

    def lat(key):
        m = re.search(rf"{key} ([\d.]+)(ns|us|ms|s)\b", out)
        return float(m.group(1)) * UNITS[m.group(2)]
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {"p50_us": lat("p50"), "mean_us": lat("avg"),
            "client_cpu_us": cpu * 1e6 / calls,
            "server_cpu_us": srv / calls / 1e3, "iterations": calls}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir")
    ap.add_argument("--out")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--serve", nargs=2, metavar=("NAME", "PORT"))
    a = ap.parse_args()
    if a.serve:
        return serve_python(a.serve[0], int(a.serve[1]))
    build = os.path.abspath(a.build_dir)
    pkg = os.path.join(build, "bindings", "python")
    sys.path.insert(0, pkg)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [pkg, os.environ.get("PYTHONPATH")]))  # the servers'
    os.environ.setdefault("SVC_RUNTIME_DIR", tempfile.mkdtemp(prefix="svc-pyb."))
    servers = Servers(build)
    results = []
    try:
        for size in SIZES:
            rows = svc_rows(servers, size)
            base, procs = baseline_rows(size)
            rows.update(base)
            for rep in range(a.reps):  # interleaved: a slow spell hits all rows
                for row in ROWS:
                    if row == "c-c-shm":
                        m = c_to_c(build, servers, size, a.seconds)
                    else:
                        trips, pid, _ = rows[row]
                        m = measure(trips, a.seconds, pid)
                    name = f"python/{row}/{size}"
                    results.append({"name": name, "run_name": name,
                                    "run_type": "iteration",
                                    "repetition_index": rep,
                                    "real_time": m["mean_us"] * 1e3,
                                    "time_unit": "ns", **m})
                    print(f"{name:28s} p50 {m['p50_us']:9.2f} µs  mean "
                          f"{m['mean_us']:9.2f} µs  client cpu "
                          f"{m['client_cpu_us']:8.2f}  server cpu "
                          f"{m['server_cpu_us']:8.2f}", flush=True)
            for _, _, handle in rows.values():
                handle.close()
            for p in procs:
                p.join(5)
    finally:
        servers.close()
    doc = {"context": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "host_name": platform.node(),
                       "num_cpus": os.cpu_count(),
                       "python": platform.python_version(),
                       "executable": "bench_python.py"},
           "benchmarks": results}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
